"""Study configuration: from the validated ``config.yaml`` to the few resolved objects every
stage needs, so that the workflow and the scripts derive instances, protocols, jobs and
labels in exactly one place.

The Snakefile validates the config against ``schemas/config.schema.yaml`` (which also fills
in defaults) after :mod:`~dimcollapse.config.schema` has named any unknown key; then
:mod:`~dimcollapse.config.instances` resolves the model instances (checkpoint series
expanded), :mod:`~dimcollapse.config.jobs` each job's protocol, the shared clip caches and
the extract rule's job, :mod:`~dimcollapse.config.temporal` the temporal study's frame orders
and time-resolved spaces, and :mod:`~dimcollapse.config.display` the labels of tables and
figures. This package is glue on top: nothing in ``data``, ``models``, ``extraction`` or
``analysis`` imports it, and it imports no torch (every Snakemake start runs it).
"""
