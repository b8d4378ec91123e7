"""The project database schema as ordered migrations; PRAGMA user_version holds the version.

Each entry moves the schema from version i to i + 1. Never edit a released migration: append one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the labeling data.
    """
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        text_hash TEXT NOT NULL UNIQUE,          -- sha1 of the whitespace-normalised text: duplicates
        source TEXT NOT NULL DEFAULT 'user',     -- 'starter', a file name, 'arena', ...
        split TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'heldout')),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',          -- model name or path that produced it
        checkpoint_id INTEGER,                   -- a checkpoints.id when a trained checkpoint produced it
        gen_config TEXT NOT NULL DEFAULT '{}',   -- JSON: temperature, top_p, top_k, max_new_tokens, seed
        origin TEXT NOT NULL DEFAULT 'generated' CHECK (origin IN ('generated', 'imported', 'edited', 'arena')),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX responses_prompt ON responses(prompt_id);
    CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        left_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,   -- shown on the left
        right_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,  -- shown on the right
        outcome TEXT NOT NULL CHECK (outcome IN ('left', 'right', 'tie', 'both_bad', 'skipped')),
        strength INTEGER NOT NULL DEFAULT 1 CHECK (strength IN (1, 2)),         -- 2: "much better"
        criterion TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        duration_ms INTEGER,
        source TEXT NOT NULL DEFAULT 'label',    -- 'label', 'import', 'arena'
        strategy TEXT NOT NULL DEFAULT 'random', -- how the pair was chosen
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX comparisons_prompt ON comparisons(prompt_id);
    CREATE INDEX comparisons_created ON comparisons(created_at);
    CREATE TABLE demonstrations (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT 'written',  -- 'written', 'edited', 'import'
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX demonstrations_prompt ON demonstrations(prompt_id);
    """,
    # 2: training runs, their metrics, checkpoints and samples (lineage through parent ids).
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        stage TEXT NOT NULL CHECK (stage IN ('sft', 'rm', 'dpo', 'ppo')),
        name TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'paused', 'stopped', 'failed', 'done')),
        base_model TEXT NOT NULL DEFAULT '',
        parent_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        parent_checkpoint_id INTEGER,
        data_size INTEGER NOT NULL DEFAULT 0,
        data_hash TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        final_metrics TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        started_at TEXT,
        finished_at TEXT
    );
    CREATE TABLE run_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        wall_time REAL NOT NULL,                 -- seconds since the epoch
        metrics TEXT NOT NULL,                   -- JSON object of floats under TRL's names
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        path TEXT NOT NULL,                      -- relative to the project folder
        kind TEXT NOT NULL DEFAULT 'adapter',    -- 'adapter', 'full', 'reward'
        metrics TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX checkpoints_run ON checkpoints(run_id);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        response TEXT NOT NULL,
        score REAL,
        kl REAL,
        extra TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX samples_run_step ON samples(run_id, step);
    """,
    # 3: project settings and full-text search over labeled pairs.
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL                      -- JSON
    );
    CREATE VIRTUAL TABLE responses_fts USING fts5(text, content='responses', content_rowid='id');
    CREATE TRIGGER responses_ai AFTER INSERT ON responses BEGIN
        INSERT INTO responses_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER responses_ad AFTER DELETE ON responses BEGIN
        INSERT INTO responses_fts(responses_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER responses_au AFTER UPDATE OF text ON responses BEGIN
        INSERT INTO responses_fts(responses_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO responses_fts(rowid, text) VALUES (new.id, new.text);
    END;
    INSERT INTO responses_fts(rowid, text) SELECT id, text FROM responses;
    """,
    # 4: a prompt's category (starter set, imports) and an index for the labeling counters.
    """
    ALTER TABLE prompts ADD COLUMN category TEXT NOT NULL DEFAULT '';
    CREATE INDEX comparisons_counters ON comparisons(source, outcome, strategy);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
