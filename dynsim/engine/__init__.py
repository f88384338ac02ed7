from dynsim.engine._legacy import sweep, locate, open_result, load_config, run_config, plot_located, cli, _configure_xla_cpu  # noqa
from dynsim.engine.batch import map_grid, local_devices  # noqa
