"""Redis beyond the broker: the task-change feed (:mod:`.changes`)."""
