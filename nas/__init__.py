"""Neural architecture search for recurrent cells, by pipeline: :mod:`nas.search` finds cells, :mod:`nas.runs`
reads what a search wrote, :mod:`nas.retrain` trains found cells to convergence; :mod:`nas.config` holds their
settings, :mod:`nas.console` their printed formats, :mod:`nas.cli` the ``nas`` command."""
