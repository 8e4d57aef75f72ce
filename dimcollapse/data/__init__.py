"""Input side of the pipeline: dataset listings, the manifest, video probing and
decoding, sampling protocols, the clip cache and the generated demo set.

Data flows one way: ``datasets`` → ``manifest`` (with ``probe``) → ``protocols`` +
``video`` → ``clips``; nothing here imports from extraction or analysis.
"""
