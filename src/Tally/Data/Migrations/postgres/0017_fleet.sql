-- A fleet, not a process. Limits toward upstreams held across every instance, when there is
-- no Redis: the same counts as the Redis store keeps (Jobs/RateLimits/RedisFleetStore.cs), decided
-- by one function call under a row lock per upstream, on the database server's clock. UNLOGGED:
-- these rows are counts of the last seconds; after a database crash they start empty, like Redis.

CREATE UNLOGGED TABLE fleet_limits (
    upstream TEXT PRIMARY KEY,
    paused_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    next_start TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    priority_waiting_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);

-- A call's start, and while it is in flight, when it stops counting (start + the call's timeout).
CREATE UNLOGGED TABLE fleet_calls (
    upstream TEXT NOT NULL,
    id TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    background BOOLEAN NOT NULL,
    in_flight_until TIMESTAMPTZ,
    PRIMARY KEY (upstream, id)
);
CREATE INDEX ix_fleet_calls_started ON fleet_calls (upstream, started_at);

-- 0 when the call may start now (its start and slot are taken), else the milliseconds to wait.
CREATE FUNCTION fleet_take(p_upstream TEXT, p_priority BOOLEAN, p_id TEXT, p_permits INT, p_reserve INT,
                           p_max_calls INT, p_window_ms INT, p_spacing_ms INT, p_timeout_ms INT)
RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    now_ TIMESTAMPTZ;
    state fleet_limits%ROWTYPE;
    lim INT := CASE WHEN p_priority THEN p_permits ELSE p_permits - p_reserve END;
    win INTERVAL := make_interval(secs => p_window_ms / 1000.0);
    spacing INTERVAL := make_interval(secs => p_spacing_ms / 1000.0);
    n INT;
    frees TIMESTAMPTZ;
    wait_ms INT;
BEGIN
    INSERT INTO fleet_limits (upstream) VALUES (p_upstream) ON CONFLICT DO NOTHING;
    SELECT * INTO state FROM fleet_limits WHERE upstream = p_upstream FOR UPDATE;
    now_ := clock_timestamp();
    IF now_ < state.paused_until THEN
        RETURN greatest(1, ceil(extract(epoch FROM state.paused_until - now_) * 1000));
    END IF;
    IF NOT p_priority AND now_ < state.priority_waiting_until THEN
        RETURN greatest(1, p_spacing_ms / 4);
    END IF;
    DELETE FROM fleet_calls WHERE upstream = p_upstream AND started_at <= now_ - win
        AND (in_flight_until IS NULL OR in_flight_until <= now_);
    UPDATE fleet_calls SET in_flight_until = NULL WHERE upstream = p_upstream AND in_flight_until <= now_;
    wait_ms := NULL;
    IF p_max_calls > 0 THEN
        SELECT count(*) INTO n FROM fleet_calls WHERE upstream = p_upstream AND in_flight_until IS NOT NULL;
        IF n >= p_max_calls THEN
            wait_ms := 5;
        ELSIF NOT p_priority THEN
            SELECT count(*) INTO n FROM fleet_calls WHERE upstream = p_upstream AND in_flight_until IS NOT NULL AND background;
            IF n >= p_max_calls - p_reserve THEN
                wait_ms := 5;
            END IF;
        END IF;
    END IF;
    IF wait_ms IS NULL THEN
        SELECT count(*) INTO n FROM fleet_calls WHERE upstream = p_upstream AND started_at > now_ - win;
        IF n >= lim THEN
            SELECT started_at INTO frees FROM fleet_calls WHERE upstream = p_upstream AND started_at > now_ - win
                ORDER BY started_at OFFSET n - lim LIMIT 1;
            wait_ms := greatest(1, ceil(extract(epoch FROM frees + win - now_) * 1000));
        ELSIF p_spacing_ms > 0 AND NOT p_priority AND now_ < state.next_start - spacing THEN
            wait_ms := greatest(1, ceil(extract(epoch FROM state.next_start - spacing - now_) * 1000));
        END IF;
    END IF;
    IF wait_ms IS NOT NULL THEN
        IF p_priority THEN
            UPDATE fleet_limits SET priority_waiting_until = now_ + make_interval(secs => greatest(50, 2 * wait_ms) / 1000.0)
                WHERE upstream = p_upstream;
        END IF;
        RETURN wait_ms;
    END IF;
    IF p_spacing_ms > 0 THEN
        UPDATE fleet_limits SET next_start = greatest(next_start, now_) + spacing WHERE upstream = p_upstream;
    END IF;
    INSERT INTO fleet_calls (upstream, id, started_at, background, in_flight_until)
        VALUES (p_upstream, p_id, now_, NOT p_priority,
                CASE WHEN p_max_calls > 0 THEN now_ + make_interval(secs => p_timeout_ms / 1000.0) END);
    RETURN 0;
END $$;

CREATE FUNCTION fleet_pause(p_upstream TEXT, p_pause_ms INT) RETURNS VOID LANGUAGE sql AS $$
    INSERT INTO fleet_limits AS f (upstream, paused_until)
    VALUES (p_upstream, clock_timestamp() + make_interval(secs => p_pause_ms / 1000.0))
    ON CONFLICT (upstream) DO UPDATE SET paused_until = greatest(f.paused_until, excluded.paused_until);
$$;

-- Which instance holds a connection's sync claim: a claim whose holder stopped, started again, or
-- went quiet for three heartbeats is free at once rather than when its lease runs out.
ALTER TABLE provider_connections ADD COLUMN sync_claimed_by TEXT NULL;
