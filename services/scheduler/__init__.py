"""The scheduler: fires cron and interval schedules, exactly once per tick, as ordinary jobs."""
