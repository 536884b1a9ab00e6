-- The events of one decky or one attacker, found without an index entry per
-- event. An index on events (decky) and one on events (src_ip) cost ~30% of
-- ingestion (two more B-tree inserts per event, scattered over thousands of
-- pages that each commit rewrites). Instead, each ingest transaction adds one
-- row per decky and per source address it stored: the range of `seq` their
-- events fall in. A query for one decky or attacker walks its ranges, newest
-- first, and reads only those stretches of `events` (a batch at most each).
DROP INDEX events_decky;
DROP INDEX events_src_ip;

CREATE TABLE event_ranges (
    -- 'decky' or 'src_ip': the column of `events` that `value` is from.
    field     TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    -- One transaction's ranges are disjoint from every other's, so for one
    -- value this order is also the order of the events.
    PRIMARY KEY (field, value, first_seq)
) WITHOUT ROWID;

-- Events stored before this migration: ranges of 8,192 seq each.
INSERT INTO event_ranges (field, value, first_seq, last_seq)
    SELECT 'decky', decky, min(seq), max(seq) FROM events GROUP BY decky, seq / 8192;
INSERT INTO event_ranges (field, value, first_seq, last_seq)
    SELECT 'src_ip', src_ip, min(seq), max(seq) FROM events GROUP BY src_ip, seq / 8192;
