"""Statistics of feature matrices: the streamed spectrum (``moments``, ``spectrum``), the
measures beyond it (``spectral``, ``neighbours``, ``geometry``, ``similarity_measures``,
``temporal``), metric tables (``tables``) and figures. Reads only feature files, never models
or video.
"""
