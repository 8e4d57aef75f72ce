"""Statistics of feature matrices: the streamed spectrum (``spectrum``), metric tables
(``metrics``) and figures (``figures``). Reads only feature files, never models or video.
"""
