"""Input side of the pipeline: dataset listings, the manifest, video probing and
decoding, sampling protocols, the clip cache and the generated demo set.

Data flows one way: ``datasets`` → ``manifest`` (with ``probe``) → ``protocols`` +
``video`` → ``clips``, and ``interventions`` reorders a clip's frames; nothing here
imports from extraction or analysis.
"""
