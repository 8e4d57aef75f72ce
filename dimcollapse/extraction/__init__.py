"""Feature extraction: sharded, resumable runs of a model over a manifest's clips
(``extract``, ``shards``) and the merge of shards into aligned feature matrices
(``features``). Reads from :mod:`dimcollapse.data` and :mod:`dimcollapse.models`.
"""
