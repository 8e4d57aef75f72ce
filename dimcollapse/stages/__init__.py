"""One function per workflow rule: the glue between Snakemake and the package.

Each rule's script (``scripts/<rule>.py``) only calls the function of the rule's name in
the module of its rule file (``rules/data.smk`` → :mod:`dimcollapse.stages.data`, …) with
the ``snakemake`` object. The functions unpack inputs, outputs, params and threads, set
up logging to the rule's log file and call the typed module APIs; they hold no
computation of their own, and every option they use comes through the rule's params.

A rule's code version (its ``code`` param) is derived from what its function imports
(:mod:`dimcollapse.code_versions`): one module per rule file keeps an edit of one family's
glue from rerunning the others.
"""
