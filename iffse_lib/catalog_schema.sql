-- The catalogue's tables and indexes at schema version 3, created by iffse_lib/catalog.py (no semicolons in comments: statements are split at them).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    summary TEXT
);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    identity TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    added_at TEXT NOT NULL,
    run_id INTEGER REFERENCES runs(id)
);
CREATE INDEX IF NOT EXISTS photos_identity ON photos(identity);
CREATE TABLE IF NOT EXISTS sources (
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    photo_id INTEGER REFERENCES photos(id) ON DELETE CASCADE,
    error TEXT,
    added_at TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    retry INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, source_id)
);
CREATE INDEX IF NOT EXISTS sources_photo ON sources(photo_id);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    stage TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_kind TEXT,
    source_id TEXT,
    photo_id INTEGER REFERENCES photos(id) ON DELETE CASCADE,
    message TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    detector TEXT NOT NULL,
    n_faces INTEGER NOT NULL,
    error TEXT,
    run_id INTEGER REFERENCES runs(id)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL,
    landmarks BLOB NOT NULL,
    detector TEXT NOT NULL,
    identity TEXT,
    UNIQUE (photo_id, idx)
);
CREATE INDEX IF NOT EXISTS faces_identity ON faces(identity);
CREATE TABLE IF NOT EXISTS models (
    tag TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    n_rows INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES models(tag),
    row INTEGER NOT NULL,
    run_id INTEGER REFERENCES runs(id),
    PRIMARY KEY (face_id, model),
    UNIQUE (model, row)
);
CREATE TABLE IF NOT EXISTS crawl_state (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
