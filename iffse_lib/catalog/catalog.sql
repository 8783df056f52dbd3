-- Every SQL statement the catalogue runs, by name (iffse_lib/catalog/sql.py reads them: a
-- statement runs from its "-- name:" line to the next). Lists of ids come as one JSON array
-- parameter, read with json_each, so that every statement is written out here in full.
-- A script (several statements) is split at semicolons, so comments hold none.

-- name: schema
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

-- Schema 1 -> 2: sources remember the file's size and mtime, and whether a failure may pass.
-- name: migrate_1
ALTER TABLE sources ADD COLUMN size INTEGER;
ALTER TABLE sources ADD COLUMN mtime_ns INTEGER;
ALTER TABLE sources ADD COLUMN retry INTEGER NOT NULL DEFAULT 0;

-- Schema 2 -> 3: identities label faces (then the subject faces are labelled, in Python).
-- name: migrate_2
ALTER TABLE faces ADD COLUMN identity TEXT;

-- ---------------------------------------------------------------------------------------------
-- Opening, transactions, meta, runs, errors, crawl state
-- ---------------------------------------------------------------------------------------------

-- name: probe
SELECT 1 FROM sqlite_master LIMIT 1

-- name: tables
SELECT name FROM sqlite_master WHERE type = 'table'

-- name: reader_settings
PRAGMA query_only = ON;
PRAGMA foreign_keys = ON

-- The writer: WAL, and deleted rows overwritten with zeros (secure_delete).
-- name: writer_settings
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA secure_delete = ON;
PRAGMA foreign_keys = ON

-- name: begin_write
BEGIN IMMEDIATE

-- name: begin_read
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- Every transaction counts itself, so that each commit's pages in the -wal include the id.
-- name: count_commit
INSERT INTO meta VALUES ('commits', '1') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1

-- name: empty_wal
PRAGMA wal_checkpoint(TRUNCATE)

-- name: integrity_check
PRAGMA integrity_check

-- name: foreign_key_check
PRAGMA foreign_key_check

-- name: meta_get
SELECT value FROM meta WHERE key = ?

-- name: meta_set
INSERT OR REPLACE INTO meta VALUES (?, ?)

-- name: run_start
INSERT INTO runs (command, args, started_at) VALUES (?, ?, ?)

-- name: run_finish
UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?

-- name: runs_killed
UPDATE runs SET status = 'killed', finished_at = ? WHERE status = 'running'

-- name: error_add
INSERT INTO errors (run_id, stage, kind, source_kind, source_id, photo_id, message, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: state_get
SELECT state FROM crawl_state WHERE source = ? AND key = ?

-- name: state_keys
SELECT key FROM crawl_state WHERE source = ?

-- name: state_set
INSERT OR REPLACE INTO crawl_state VALUES (?, ?, ?, ?)

-- name: state_delete
DELETE FROM crawl_state WHERE source = ? AND key = ?

-- ---------------------------------------------------------------------------------------------
-- Sources and photos
-- ---------------------------------------------------------------------------------------------

-- name: source_exists
SELECT 1 FROM sources WHERE kind = ? AND source_id = ?

-- name: source_states
SELECT source_id, size, mtime_ns, retry FROM sources WHERE kind = ?

-- name: source_state
SELECT size, mtime_ns, retry FROM sources WHERE kind = ? AND source_id = ?

-- name: source_set
INSERT OR REPLACE INTO sources (kind, source_id, photo_id, error, added_at, size, mtime_ns, retry)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: photo_path
SELECT path FROM photos WHERE id = ?

-- name: photo_files
SELECT id, sha256, path FROM photos ORDER BY id

-- name: photo_with_sha256
SELECT id FROM photos WHERE sha256 = ?

-- name: photo_add
INSERT INTO photos (sha256, path, width, height, nbytes, source_kind, source_id, identity, meta, added_at, run_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: photo_sizes
SELECT id, width, height FROM photos

-- name: photos_of_owner
SELECT id FROM photos
WHERE lower(json_extract(meta, '$.username')) = lower(:name) OR json_extract(meta, '$.owner_id') = :name

-- name: photos_of_shortcode
SELECT id FROM photos WHERE json_extract(meta, '$.shortcode') = ?

-- name: photo_paths
SELECT path FROM photos WHERE id IN (SELECT value FROM json_each(?))

-- The vector rows of the faces of the photos in a JSON array.
-- name: vector_rows_of_photos
SELECT model, row FROM vectors
WHERE face_id IN (SELECT id FROM faces WHERE photo_id IN (SELECT value FROM json_each(?)))

-- The faces of the photos in a JSON array, with their vectors (each statement takes the array).
-- name: delete_faces_of_photos
DELETE FROM vectors WHERE face_id IN (SELECT id FROM faces WHERE photo_id IN (SELECT value FROM json_each(?)));
DELETE FROM faces WHERE photo_id IN (SELECT value FROM json_each(?))

-- The photos in a JSON array, with everything that refers to them: their sources are kept,
-- marked forgotten.
-- name: delete_photos
DELETE FROM detections WHERE photo_id IN (SELECT value FROM json_each(?));
DELETE FROM errors WHERE photo_id IN (SELECT value FROM json_each(?));
UPDATE sources SET photo_id = NULL, error = 'forgotten', retry = 0 WHERE photo_id IN (SELECT value FROM json_each(?));
DELETE FROM photos WHERE id IN (SELECT value FROM json_each(?))

-- ---------------------------------------------------------------------------------------------
-- Detection and embedding batches
-- ---------------------------------------------------------------------------------------------

-- name: detection_set
INSERT OR REPLACE INTO detections (photo_id, detector, n_faces, error, run_id) VALUES (?, ?, ?, ?, ?)

-- name: face_add
INSERT INTO faces (photo_id, idx, left, top, right, bottom, score, landmarks, detector)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: face_ids_of_photos
SELECT photo_id, idx, id FROM faces WHERE photo_id IN (SELECT value FROM json_each(?))

-- What labels.subject_labels needs to pick each labelled photo's subject face: of every photo,
-- or (labels_of_photos) of the photos in a JSON array.
-- name: labels_of_all
SELECT f.id, p.id, p.identity, p.width, p.height, p.source_kind, f.left, f.top, f.right, f.bottom
FROM photos p JOIN faces f ON f.photo_id = p.id ORDER BY p.id, f.idx

-- name: labels_of_photos
SELECT f.id, p.id, p.identity, p.width, p.height, p.source_kind, f.left, f.top, f.right, f.bottom
FROM photos p JOIN faces f ON f.photo_id = p.id
WHERE p.id IN (SELECT value FROM json_each(?)) ORDER BY p.id, f.idx

-- name: face_label_set
UPDATE faces SET identity = ? WHERE id = ?

-- Photos that need work for :model: never detected, failed for a reason that may pass (:retry,
-- a JSON array), detected by another detector than :redetect (when given), or with faces that
-- lack a :model vector; "detected" says whether their faces are kept.
-- name: pending_photos
SELECT p.id, p.path,
       d.photo_id IS NOT NULL AND d.error IS NULL AND (:redetect IS NULL OR d.detector = :redetect) AS detected
FROM photos p LEFT JOIN detections d ON d.photo_id = p.id
WHERE d.photo_id IS NULL
   OR d.error IN (SELECT value FROM json_each(:retry))
   OR (:redetect IS NOT NULL AND d.detector != :redetect)
   OR EXISTS (SELECT 1 FROM faces f WHERE f.photo_id = p.id
              AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.face_id = f.id AND v.model = :model))
ORDER BY p.id

-- name: faces_to_embed
SELECT f.photo_id, f.idx, f.landmarks, f.left, f.top, f.right, f.bottom, f.detector
FROM faces f
WHERE f.photo_id IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.face_id = f.id AND v.model = ?)
ORDER BY f.photo_id, f.idx

-- name: other_detector_photos
SELECT COUNT(*) FROM detections WHERE detector != ? AND error IS NULL

-- name: main_detector
SELECT detector FROM faces GROUP BY detector ORDER BY COUNT(*) DESC LIMIT 1

-- ---------------------------------------------------------------------------------------------
-- Models and vectors
-- ---------------------------------------------------------------------------------------------

-- name: model_get
SELECT tag, dim, n_rows FROM models WHERE tag = ?

-- name: models
SELECT tag, dim, n_rows FROM models ORDER BY tag

-- name: model_add
INSERT OR IGNORE INTO models (tag, dim, n_rows, created_at) VALUES (?, ?, 0, ?)

-- name: model_rows_set
UPDATE models SET n_rows = ? WHERE tag = ?

-- name: vector_add
INSERT INTO vectors (face_id, model, row, run_id) VALUES (?, ?, ?, ?)

-- name: vector_rows
SELECT face_id, row FROM vectors WHERE model = ? ORDER BY face_id

-- name: vector_rows_of_faces
SELECT face_id, row FROM vectors WHERE model = ? AND face_id IN (SELECT value FROM json_each(?)) ORDER BY face_id

-- name: vector_rows_in_use
SELECT row FROM vectors WHERE model = ?

-- name: vectors_delete_of_faces
DELETE FROM vectors WHERE model = ? AND face_id IN (SELECT value FROM json_each(?))

-- name: vectors_delete_from_row
DELETE FROM vectors WHERE model = ? AND row >= ?

-- ---------------------------------------------------------------------------------------------
-- Reads: faces, tables for notebooks, counts, evaluation
-- ---------------------------------------------------------------------------------------------

-- name: face
SELECT * FROM faces WHERE id = ?

-- name: faces_of_photo
SELECT * FROM faces WHERE photo_id = ? ORDER BY idx

-- Search results: each face's photo, box, label and photo path.
-- name: face_rows
SELECT f.id, f.photo_id, f.left, f.top, f.right, f.bottom, f.identity, p.path
FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.id IN (SELECT value FROM json_each(?))

-- The same of a schema-2 catalogue read without upgrading: labels on photos only.
-- name: face_rows_v2
SELECT f.id, f.photo_id, f.left, f.top, f.right, f.bottom, p.identity AS identity, p.path
FROM faces f JOIN photos p ON p.id = f.photo_id WHERE f.id IN (SELECT value FROM json_each(?))

-- The demo's example query: the first face with a :model vector whose identity has several photos.
-- name: first_face_of_a_repeated_identity
SELECT f.id, p.identity, p.path FROM faces f JOIN photos p ON p.id = f.photo_id
JOIN vectors v ON v.face_id = f.id AND v.model = ?
WHERE p.identity IN (SELECT identity FROM photos GROUP BY identity HAVING COUNT(*) > 1)
ORDER BY f.id LIMIT 1

-- Catalog.photos(): one row per photo, with its detection and its post's metadata.
-- name: photos_table
SELECT p.id AS photo_id, p.source_kind, p.source_id, p.identity, p.width, p.height, p.nbytes, p.path,
       p.sha256, p.added_at, d.n_faces, d.error AS detect_error,
       json_extract(p.meta, '$.shortcode') AS shortcode,
       json_extract(p.meta, '$.username') AS username,
       json_extract(p.meta, '$.taken_at') AS taken_at,
       json_extract(p.meta, '$.like_count') AS like_count,
       json_extract(p.meta, '$.comment_count') AS comment_count,
       json_extract(p.meta, '$.hashtags') AS hashtags,
       json_extract(p.meta, '$.mentions') AS mentions,
       json_extract(p.meta, '$.location') AS location,
       json_extract(p.meta, '$.original_width') AS original_width,
       json_extract(p.meta, '$.original_height') AS original_height,
       json_extract(p.meta, '$.accessibility_caption') AS accessibility_caption,
       json_extract(p.meta, '$.product_type') AS product_type,
       json_extract(p.meta, '$.tab') AS tab
FROM photos p LEFT JOIN detections d ON d.photo_id = p.id ORDER BY p.id

-- Catalog.faces(): every face (or, with :model, those with a :model vector, and its row).
-- name: faces_table
SELECT f.id AS face_id, f.photo_id, f.idx, f.left, f.top, f.right, f.bottom, f.score, f.landmarks,
       f.detector, f.identity, p.identity AS photo_identity, p.path, p.source_kind, p.source_id, v.row
FROM faces f JOIN photos p ON p.id = f.photo_id
LEFT JOIN vectors v ON v.face_id = f.id AND v.model = :model
WHERE :model IS NULL OR v.face_id IS NOT NULL ORDER BY f.id

-- The same of a schema-2 catalogue read without upgrading (the labels are computed in Python).
-- name: faces_table_v2
SELECT f.id AS face_id, f.photo_id, f.idx, f.left, f.top, f.right, f.bottom, f.score, f.landmarks,
       f.detector, p.identity AS photo_identity, p.path, p.source_kind, p.source_id, v.row
FROM faces f JOIN photos p ON p.id = f.photo_id
LEFT JOIN vectors v ON v.face_id = f.id AND v.model = :model
WHERE :model IS NULL OR v.face_id IS NOT NULL ORDER BY f.id

-- name: errors_table
SELECT * FROM errors ORDER BY id

-- name: counts
SELECT (SELECT COUNT(*) FROM photos) AS photos,
       (SELECT COUNT(*) FROM detections) AS photos_detected,
       (SELECT COUNT(*) FROM detections WHERE n_faces = 0 AND error IS NULL) AS photos_without_faces,
       (SELECT COUNT(*) FROM faces) AS faces,
       (SELECT COUNT(DISTINCT identity) FROM photos WHERE identity IS NOT NULL) AS identities

-- name: vectors_per_model
SELECT model, COUNT(*) FROM vectors GROUP BY model

-- name: errors_per_kind
SELECT stage || ':' || kind, COUNT(*) FROM errors GROUP BY stage, kind ORDER BY 1

-- The LFW photos: file name, photo, size and detection.
-- name: lfw_photos
SELECT s.source_id, p.id, p.path, p.width, p.height, d.n_faces, d.error, d.detector
FROM sources s JOIN photos p ON p.id = s.photo_id
LEFT JOIN detections d ON d.photo_id = p.id WHERE s.kind = 'lfw'

-- The faces of the LFW photos in photo order, and whether each has a vector of the model.
-- name: lfw_faces
SELECT f.photo_id, f.id, f.left, f.top, f.right, f.bottom, v.face_id IS NOT NULL, f.landmarks
FROM faces f LEFT JOIN vectors v ON v.face_id = f.id AND v.model = ?
WHERE f.photo_id IN (SELECT photo_id FROM sources WHERE kind = 'lfw') ORDER BY f.photo_id, f.idx
