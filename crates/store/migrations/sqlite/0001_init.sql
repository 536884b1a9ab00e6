-- The DECNET store, SQLite dialect.
-- Times are integer microseconds since the Unix epoch (the event log's precision).
-- IP addresses are text in Rust's canonical form; UUIDs are hyphenated text.

-- Every event, as logged.
CREATE TABLE events (
    -- Ingestion order, which is log order: `after` cursors page by it, so a
    -- follower never misses an event logged late with an earlier timestamp.
    -- Declared, not the implicit rowid, because VACUUM may renumber that.
    seq        INTEGER PRIMARY KEY,
    -- The event's UUIDv7; a re-delivered event conflicts here and is ignored.
    id         TEXT    NOT NULL UNIQUE,
    time       INTEGER NOT NULL,
    decky      TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    -- RFC 5424 code: 0 emergency … 7 debug.
    severity   INTEGER NOT NULL,
    src_ip     TEXT    NOT NULL,
    src_port   INTEGER NOT NULL,
    session    TEXT,
    -- JSON object; NULL when the event has none.
    fields     TEXT,
    -- JSON, as in the event log (secret and challenge in base64).
    credential TEXT,
    message    TEXT
);
-- An index on a rowid table ends with the rowid (here `seq`), so each of these
-- also serves "the newest N where column = x" without sorting. Every index
-- costs ingestion dearly (the three of time, service and kind ~30%), so only
-- the analyst's two ways in have one: by decky and by attacker. Service and
-- kind have few values, each common: "the newest N of kind k" is found by
-- walking `seq` backwards. Time needs none: ids are UUIDv7, whose text
-- sorts by time, so the `id` index finds "since T".
CREATE INDEX events_decky ON events (decky);
CREATE INDEX events_src_ip ON events (src_ip);

-- One row per source address. Its distinct sessions and credentials are
-- counted from those tables when read, which keeps that off the write path.
CREATE TABLE attackers (
    ip          TEXT    PRIMARY KEY,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    events      INTEGER NOT NULL
);
CREATE INDEX attackers_last_seen ON attackers (last_seen);

-- The services and deckies each attacker touched. Foreign keys are deferred:
-- one ingest transaction writes parents and children in whatever order suits it.
CREATE TABLE attacker_services (
    ip         TEXT    NOT NULL REFERENCES attackers (ip) DEFERRABLE INITIALLY DEFERRED,
    service    TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (ip, service)
) WITHOUT ROWID;

CREATE TABLE attacker_deckies (
    ip         TEXT    NOT NULL REFERENCES attackers (ip) DEFERRABLE INITIALLY DEFERRED,
    decky      TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (ip, decky)
) WITHOUT ROWID;

-- Captured secrets, one row per attacker, decky, service, kind, principal and
-- secret, with how often it was tried.
CREATE TABLE credentials (
    id               INTEGER PRIMARY KEY,
    src_ip           TEXT    NOT NULL REFERENCES attackers (ip) DEFERRABLE INITIALLY DEFERRED,
    decky            TEXT    NOT NULL,
    service          TEXT    NOT NULL,
    secret_kind      TEXT    NOT NULL,
    -- NULL when none was given.
    principal        TEXT,
    -- The principal or '': NULLs never conflict in a UNIQUE constraint.
    principal_key    TEXT    NOT NULL,
    -- Hex SHA-256 of the raw secret.
    secret_sha256    TEXT    NOT NULL,
    secret           BLOB    NOT NULL,
    secret_printable TEXT    NOT NULL,
    -- The server's challenge or salt of the first attempt.
    challenge        BLOB,
    -- hashcat's input line, for the kinds hashcat cracks.
    hashcat          TEXT,
    attempts         INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    -- 'success' or 'failure' of the latest attempt that had one, and its time.
    last_outcome     TEXT,
    last_outcome_at  INTEGER,
    -- Also counts an attacker's credentials.
    UNIQUE (src_ip, decky, service, secret_kind, principal_key, secret_sha256)
);
CREATE INDEX credentials_last_seen ON credentials (last_seen);

-- Connections (or UDP flows), from their events.
CREATE TABLE sessions (
    id       TEXT    PRIMARY KEY,
    decky    TEXT    NOT NULL,
    service  TEXT    NOT NULL,
    src_ip   TEXT    NOT NULL REFERENCES attackers (ip) DEFERRABLE INITIALLY DEFERRED,
    src_port INTEGER NOT NULL,
    -- The first event's time.
    started  INTEGER NOT NULL,
    -- The disconnect event's time, once one is seen.
    ended    INTEGER,
    events   INTEGER NOT NULL
);
CREATE INDEX sessions_started ON sessions (started);
CREATE INDEX sessions_src_ip ON sessions (src_ip);

-- The deployed fleet, replaced as a whole by the engine.
CREATE TABLE fleet_deckies (
    name      TEXT    PRIMARY KEY,
    ip        TEXT    NOT NULL,
    mac       TEXT    NOT NULL,
    hostname  TEXT    NOT NULL,
    distro    TEXT    NOT NULL,
    os_family TEXT    NOT NULL,
    -- JSON array of service names.
    services  TEXT    NOT NULL,
    -- When the row last changed.
    updated   INTEGER NOT NULL
);

-- How far each source has been ingested, written in the same transaction as
-- the rows it covers: that is what makes ingestion exactly-once.
CREATE TABLE ingest_offsets (
    source      TEXT    PRIMARY KEY,
    inode       INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    -- The file's first bytes (up to 64), so a recycled inode number is not
    -- mistaken for the file we were reading.
    head        BLOB    NOT NULL,
    updated     INTEGER NOT NULL
);
