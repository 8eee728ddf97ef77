-- Prompt templates proposed and approved at run time (`inferguard templates …`), besides the
-- static ones of policy.yaml. A template is `proposed`, then `approved` (it applies to roles
-- with `templates_only: true`), then `retired` (final). Every status change is also in the
-- change feed (entity 'template', id = the name).
CREATE TABLE prompt_templates (
    name        TEXT    NOT NULL PRIMARY KEY,
    text        TEXT    NOT NULL,
    -- Most words in one placeholder value.
    max_words   BIGINT  NOT NULL DEFAULT 6 CHECK (max_words BETWEEN 1 AND 50),
    status      TEXT    NOT NULL CHECK (status IN ('proposed', 'approved', 'retired')),
    proposed_by TEXT    NOT NULL,
    proposed_at BIGINT  NOT NULL,
    approved_by TEXT,
    approved_at BIGINT,
    retired_by  TEXT,
    retired_at  BIGINT
);

CREATE INDEX prompt_templates_status ON prompt_templates (status);
