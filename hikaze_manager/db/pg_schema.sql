-- The shared library on PostgreSQL: the tables of the SQLite schema (db/upgrades.py, current
-- version), split into what every machine shares (schema hikaze) and what each machine keeps
-- for itself (one schema per machine, {machine}). Text is COLLATE "C" so that order and lower()
-- are SQLite's (bytes, ASCII case folding) whatever the database's locale.
-- A path can be longer (up to 4 kB) than a btree index entry may be (about 2.7 kB), so no btree
-- holds a raw path: uniqueness is on md5(path) (ON CONFLICT(path) is translated in db/pg.py) and
-- lookups by path use hash indexes, whose entries are a 4-byte hash of any length. Libraries made
-- before (schema version 1) lose their btree on the path here, where it still exists.
-- @@shared
CREATE SCHEMA IF NOT EXISTS hikaze;
CREATE TABLE IF NOT EXISTS hikaze.version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO hikaze.version(id, value) VALUES (1, 1) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION hikaze.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hikaze.version SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END $$;
-- SQLite's AUTOINCREMENT on every serial table: a NULL id takes the next one, an explicit id
-- moves the counter past it, so no id is ever handed out twice.
CREATE OR REPLACE FUNCTION hikaze.autoincrement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq TEXT := pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'id');
BEGIN
    IF NEW.id IS NULL THEN
        NEW.id := nextval(seq);
    ELSIF NEW.id > COALESCE(pg_sequence_last_value(seq::regclass), 0) THEN
        PERFORM setval(seq, NEW.id);
    END IF;
    RETURN NEW;
END $$;
CREATE TABLE IF NOT EXISTS hikaze.machines (
    name TEXT COLLATE "C" PRIMARY KEY,
    schema_name TEXT COLLATE "C" UNIQUE NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hikaze.model_records (
    sha256 TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C",
    type TEXT COLLATE "C",
    size_bytes BIGINT,
    created_at BIGINT,
    meta_json TEXT COLLATE "C",
    base_model TEXT COLLATE "C",
    base_family TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS idx_models_type ON hikaze.model_records(type);
CREATE INDEX IF NOT EXISTS idx_models_base_family ON hikaze.model_records(base_family);
CREATE TABLE IF NOT EXISTS hikaze.model_paths (
    sha256 TEXT COLLATE "C" NOT NULL REFERENCES hikaze.model_records(sha256) ON DELETE CASCADE,
    machine TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (sha256, machine)
);
DROP INDEX IF EXISTS hikaze.idx_model_paths_path;
CREATE INDEX IF NOT EXISTS idx_model_paths_path_hash ON hikaze.model_paths USING hash (path);
CREATE TABLE IF NOT EXISTS hikaze.tags (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" UNIQUE NOT NULL,
    name_key TEXT COLLATE "C"
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_tags_name_key ON hikaze.tags(name_key);
CREATE TABLE IF NOT EXISTS hikaze.model_tags (
    model_hash TEXT COLLATE "C" NOT NULL REFERENCES hikaze.model_records(sha256) ON DELETE CASCADE,
    tag_id BIGINT NOT NULL REFERENCES hikaze.tags(id) ON DELETE CASCADE,
    PRIMARY KEY (model_hash, tag_id)
);
CREATE INDEX IF NOT EXISTS idx_model_tags_tag ON hikaze.model_tags(tag_id);
-- Each model's tag list as the list endpoint writes it (db/list_sql.py), kept by statement
-- triggers on the links and the tags, so an uncached list reads one row per model instead of
-- grouping every link (as SQLite's model_tag_lists, db/upgrades.py). A model without tags has
-- no row. Older servers keep it too: the triggers live in the database.
CREATE TABLE IF NOT EXISTS hikaze.model_tag_lists (
    model_hash TEXT COLLATE "C" PRIMARY KEY,
    tags TEXT COLLATE "C" NOT NULL
);
CREATE OR REPLACE FUNCTION hikaze.refresh_tag_lists(models TEXT[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM hikaze.model_tag_lists WHERE model_hash IN (SELECT unnest(models));
    INSERT INTO hikaze.model_tag_lists(model_hash, tags)
    SELECT mt.model_hash, '[' || string_agg('{"id":' || t.id || ',"name":' || to_json(CAST(t.name AS TEXT))::text
                                            || '}', ',' ORDER BY t.name_key, t.id) || ']'
    FROM hikaze.model_tags mt JOIN hikaze.tags t ON t.id = mt.tag_id
    WHERE mt.model_hash IN (SELECT unnest(models)) GROUP BY mt.model_hash;
$$;
CREATE OR REPLACE FUNCTION hikaze.links_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM hikaze.refresh_tag_lists(ARRAY(SELECT DISTINCT model_hash FROM added));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM hikaze.refresh_tag_lists(ARRAY(SELECT DISTINCT model_hash FROM removed));
    ELSE
        PERFORM hikaze.refresh_tag_lists(ARRAY(
            SELECT model_hash FROM removed UNION SELECT model_hash FROM added));
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION hikaze.tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hikaze.refresh_tag_lists(ARRAY(
        SELECT DISTINCT mt.model_hash FROM hikaze.model_tags mt
        WHERE mt.tag_id IN (SELECT id FROM removed UNION SELECT id FROM added)));
    RETURN NULL;
END $$;
-- TRUNCATE (also one cascading from model_records or tags) fires no DELETE trigger.
CREATE OR REPLACE FUNCTION hikaze.links_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM hikaze.model_tag_lists;
    RETURN NULL;
END $$;
CREATE TABLE IF NOT EXISTS hikaze.model_metadata (
    sha256 TEXT COLLATE "C" PRIMARY KEY REFERENCES hikaze.model_records(sha256) ON DELETE CASCADE,
    trigger_words TEXT COLLATE "C",
    training_tags TEXT COLLATE "C",
    header_metadata TEXT COLLATE "C",
    autov2 TEXT COLLATE "C",
    autov3 TEXT COLLATE "C",
    sources TEXT COLLATE "C",
    extra TEXT COLLATE "C",
    report TEXT COLLATE "C",
    updated_at BIGINT
);
CREATE TABLE IF NOT EXISTS hikaze.db_meta (
    key TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C"
);
-- Only when missing: any INSERT statement, even one that adds no row, fires the version trigger,
-- and a start-up (or a second library copy) must not change the library's version.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM hikaze.db_meta WHERE key = 'db_version') THEN
        INSERT INTO hikaze.db_meta(key, value) VALUES ('db_version', '2');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM hikaze.db_meta WHERE key = 'tags_id_max') THEN
        INSERT INTO hikaze.db_meta(key, value) VALUES ('tags_id_max', '0');
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS hikaze.image_tiers (
    sha256 TEXT COLLATE "C" NOT NULL,
    position INTEGER NOT NULL,
    tier TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, position, tier)
);
-- Transition tables allow one event per trigger.
CREATE OR REPLACE TRIGGER tag_lists_links_added AFTER INSERT ON hikaze.model_tags
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION hikaze.links_changed();
CREATE OR REPLACE TRIGGER tag_lists_links_removed AFTER DELETE ON hikaze.model_tags
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION hikaze.links_changed();
CREATE OR REPLACE TRIGGER tag_lists_links_changed AFTER UPDATE ON hikaze.model_tags
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION hikaze.links_changed();
CREATE OR REPLACE TRIGGER tag_lists_links_truncated AFTER TRUNCATE ON hikaze.model_tags
    FOR EACH STATEMENT EXECUTE FUNCTION hikaze.links_truncated();
CREATE OR REPLACE TRIGGER tag_lists_tags_changed AFTER UPDATE ON hikaze.tags
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION hikaze.tags_changed();
-- Filled once, when the table is new (the triggers keep it from then on); never on a start-up
-- that finds it filled, and never an INSERT that adds nothing (see db_meta above).
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM hikaze.model_tag_lists)
            AND EXISTS (SELECT 1 FROM hikaze.model_tags) THEN
        PERFORM hikaze.refresh_tag_lists(ARRAY(SELECT DISTINCT model_hash FROM hikaze.model_tags));
    END IF;
END $$;
-- @@machine
CREATE SCHEMA IF NOT EXISTS {machine};
CREATE TABLE IF NOT EXISTS {machine}.pending_import (
    id BIGSERIAL PRIMARY KEY,
    path TEXT COLLATE "C" NOT NULL,
    sha256 TEXT COLLATE "C",
    name TEXT COLLATE "C",
    type TEXT COLLATE "C",
    size_bytes BIGINT,
    created_at BIGINT,
    meta_json TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS idx_pending_created ON {machine}.pending_import(created_at);
CREATE INDEX IF NOT EXISTS idx_pending_sha ON {machine}.pending_import(sha256);
CREATE TABLE IF NOT EXISTS {machine}.pending_model_tags (
    model_id BIGINT NOT NULL REFERENCES {machine}.pending_import(id) ON DELETE CASCADE,
    tag_id BIGINT NOT NULL REFERENCES hikaze.tags(id) ON DELETE CASCADE,
    PRIMARY KEY (model_id, tag_id)
);
CREATE INDEX IF NOT EXISTS idx_pending_tags_tag ON {machine}.pending_model_tags(tag_id);
CREATE TABLE IF NOT EXISTS {machine}.file_hashes (
    path TEXT COLLATE "C" NOT NULL,
    size_bytes BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    hashed_at BIGINT NOT NULL,
    autov3 TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS idx_file_hashes_sha ON {machine}.file_hashes(sha256);
CREATE TABLE IF NOT EXISTS {machine}.legacy_imports (
    source TEXT COLLATE "C" NOT NULL,
    legacy_id BIGINT NOT NULL,
    legacy_path TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('model', 'pending')),
    sha256 TEXT COLLATE "C",
    pending_id BIGINT,
    image_sha256 TEXT COLLATE "C",
    imported_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_legacy_imports_sha ON {machine}.legacy_imports(sha256);
-- Only where the old key is still there: ALTER TABLE locks the table even when it drops nothing.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pending_import_path_key'
               AND conrelid = '{machine}.pending_import'::regclass) THEN
        ALTER TABLE {machine}.pending_import DROP CONSTRAINT pending_import_path_key;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'file_hashes_pkey'
               AND conrelid = '{machine}.file_hashes'::regclass) THEN
        ALTER TABLE {machine}.file_hashes DROP CONSTRAINT file_hashes_pkey;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'legacy_imports_pkey'
               AND conrelid = '{machine}.legacy_imports'::regclass) THEN
        ALTER TABLE {machine}.legacy_imports DROP CONSTRAINT legacy_imports_pkey;
    END IF;
END $$;
CREATE UNIQUE INDEX IF NOT EXISTS pending_import_path_md5 ON {machine}.pending_import (md5(path));
CREATE INDEX IF NOT EXISTS idx_pending_path ON {machine}.pending_import USING hash (path);
CREATE UNIQUE INDEX IF NOT EXISTS file_hashes_path_md5 ON {machine}.file_hashes (md5(path));
CREATE INDEX IF NOT EXISTS idx_file_hashes_path ON {machine}.file_hashes USING hash (path);
-- source is "path:" and the v1 file's path when the v1 library has no system tags to name it.
CREATE UNIQUE INDEX IF NOT EXISTS legacy_imports_key
    ON {machine}.legacy_imports (md5(source), legacy_id, md5(legacy_path));
CREATE INDEX IF NOT EXISTS idx_legacy_imports_source ON {machine}.legacy_imports USING hash (source);
CREATE TABLE IF NOT EXISTS {machine}.image_writes (
    id BIGSERIAL PRIMARY KEY,
    sha256 TEXT COLLATE "C" NOT NULL,
    picture TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);
-- This machine's view of the library: every model, with this machine's path ('' without a copy).
CREATE OR REPLACE VIEW {machine}.models AS
    SELECT r.sha256, COALESCE(p.path, '') AS path, r.name, r.type, r.size_bytes, r.created_at,
           r.meta_json, r.base_model, r.base_family
    FROM hikaze.model_records r
    LEFT JOIN hikaze.model_paths p ON p.sha256 = r.sha256 AND p.machine = {machine_name};
-- The machine's name reaches the body as the trigger's argument (TG_ARGV[0]), never as text
-- pasted into it: a name holding $$ would end the dollar-quoted body.
CREATE OR REPLACE FUNCTION {machine}.models_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    machine_name TEXT := TG_ARGV[0];
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM hikaze.model_records WHERE sha256 = OLD.sha256;
        RETURN OLD;
    END IF;
    IF NEW.path IS NULL THEN
        RAISE not_null_violation USING MESSAGE = 'NOT NULL constraint failed: models.path';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO hikaze.model_records(sha256, name, type, size_bytes, created_at, meta_json,
                                         base_model, base_family)
        VALUES (NEW.sha256, NEW.name, NEW.type, NEW.size_bytes, NEW.created_at, NEW.meta_json,
                NEW.base_model, NEW.base_family);
    ELSE
        UPDATE hikaze.model_records SET sha256 = NEW.sha256, name = NEW.name, type = NEW.type,
            size_bytes = NEW.size_bytes, created_at = NEW.created_at, meta_json = NEW.meta_json,
            base_model = NEW.base_model, base_family = NEW.base_family
        WHERE sha256 = OLD.sha256
          AND (sha256, name, type, size_bytes, created_at, meta_json, base_model, base_family)
              IS DISTINCT FROM (NEW.sha256, NEW.name, NEW.type, NEW.size_bytes, NEW.created_at,
                                NEW.meta_json, NEW.base_model, NEW.base_family);
        IF NEW.path IS NOT DISTINCT FROM OLD.path THEN
            RETURN NEW;
        END IF;
    END IF;
    IF NEW.path = '' THEN
        DELETE FROM hikaze.model_paths WHERE sha256 = NEW.sha256 AND machine = machine_name;
    ELSE
        INSERT INTO hikaze.model_paths(sha256, machine, path) VALUES (NEW.sha256, machine_name, NEW.path)
        ON CONFLICT (sha256, machine) DO UPDATE SET path = excluded.path;
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER models_write INSTEAD OF INSERT OR UPDATE OR DELETE ON {machine}.models
    FOR EACH ROW EXECUTE FUNCTION {machine}.models_write({machine_name});
