-- $1 queue, $2 rate period seconds: seconds until the oldest start in the window leaves it
-- (null: the window is empty).
SELECT jobrunner_rate_wait($1, $2) AS wait_s
