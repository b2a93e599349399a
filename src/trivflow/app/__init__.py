"""The application: what turns a Hydra config into a run directory.

``config`` (the dataclass schemas of the config groups and :func:`~trivflow.app.config.validate`,
every check before compute), ``experiment`` (the sample task: flows, samplers, analysis,
results.json), ``tune`` (the tune_beta task), ``rundir`` (the run directory's lock and the rules for
resuming), ``resources`` (the memory estimate) and ``environment`` (devices, versions, the
results.json header). The command lines ``python -m trivflow.run`` and ``python -m trivflow.report``
sit on top of it.

The library (``trivflow.lattice``, ``hmc``, ``flows``, ``priors``, ``training``, ``samplers``,
``analysis``, ``tuning``, ``summary``, ``io``, ``plots``, ``state``) never imports this package:
its errors name its own parameters, and the application validates config keys before calling it.
"""
