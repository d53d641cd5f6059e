-- $1 lock_timeout (text, e.g. '5s'). For the rest of the current transaction only.
SELECT set_config('lock_timeout', $1, true) AS lock_timeout
