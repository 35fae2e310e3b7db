"""The schema, as SQLAlchemy Core tables (batch inserts and aggregates need no ORM)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

teams = Table(
    "teams",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("max_budget", Float, nullable=True),
    Column("budget_duration", String(16), nullable=True),
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200), nullable=True),
    Column("team", String(64), nullable=True, index=True),
    Column("models", JSON, nullable=False, default=list),
    Column("prompts", JSON, nullable=False, default=list),
    Column("max_budget", Float, nullable=True),
    Column("budget_duration", String(16), nullable=True),
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("log_bodies", Boolean, nullable=False, default=False),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

# One row per price-map version; request rows point here instead of copying prices.
price_versions = Table(
    "price_versions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("prices", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

request_log = Table(
    "request_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("team", String(64), nullable=True),
    Column("route", String(64), nullable=False),
    Column("alias", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("provider", String(64), nullable=True),
    # A stream that broke and was continued on `deployment` (gateway.stream_recovery).
    Column("recovered", Boolean, nullable=False, default=False),
    Column("recovered_from", String(200), nullable=True),
    Column("prompt_name", String(200), nullable=True),
    Column("prompt_version", String(64), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("upstream_ms", Float, nullable=True),
    Column("overhead_ms", Float, nullable=True),
    Column("ttft_ms", Float, nullable=True),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("estimated", Boolean, nullable=False, default=False),
    Column("price_version", String(64), nullable=True),
    Column("trace_id", String(32), nullable=True),
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    # The registry version that answered (NAME@N), and for classic models the rows predicted.
    Column("model_version", String(300), nullable=True),
    Column("predictions", BigInteger, nullable=False, default=0),
    # Classic calls: values breaking the version's expectations, per feature ({name: count}).
    Column("feature_violations", JSON, nullable=True),
    # Reading the log back (GET /v1/logs, budgets, cost reports) filters on these, newest
    # first; the partial ones cost a write only for the rows they hold.
    Index("ix_request_log_created_at", "created_at"),
    Index("ix_request_log_key_created", "key_id", "created_at"),
    Index("ix_request_log_team_created", "team", "created_at"),
    Index("ix_request_log_alias_created", "alias", "created_at"),
    Index(
        "ix_request_log_prompt_created",
        "prompt_name",
        "created_at",
        sqlite_where=text("prompt_name IS NOT NULL"),
        postgresql_where=text("prompt_name IS NOT NULL"),
    ),
    Index(
        "ix_request_log_model_version_created",
        "model_version",
        "created_at",
        sqlite_where=text("model_version IS NOT NULL"),
        postgresql_where=text("model_version IS NOT NULL"),
    ),
    Index(
        "ix_request_log_errors_created",
        "created_at",
        sqlite_where=text("status >= 400"),
        postgresql_where=text("status >= 400"),
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("detail", JSON, nullable=False, default=dict),
)

# Prompt versions are immutable: the content hash is the version.
prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("content", Text, nullable=False),
    # The partials and named schemas the version includes; null: registered before the
    # gateway rendered as Dotprompt does (the version keeps rendering as it did then).
    Column("includes", JSON, nullable=True),
    Column("path", String(500), nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_author", String(200), nullable=True),
    Column("git_message", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

# A label points at one version, or splits traffic across versions by weight.
prompt_labels = Table(
    "prompt_labels",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("label", String(64), primary_key=True),
    Column("target", JSON, nullable=False),  # {"version": v} or {"weights": {v: w, ...}}
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_by", String(200), nullable=False),
)

prompt_label_history = Table(
    "prompt_label_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("from_target", JSON, nullable=True),
    Column("to_target", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Every eval run, linked to the prompt version or model it tested; promotion gates read it.
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("suite", String(200), nullable=False),
    Column("target", String(300), nullable=False),
    Column("version", String(300), nullable=False),  # prompt name@version, or the model alias
    Column("baseline_version", String(300), nullable=True),
    Column("passed", Boolean, nullable=False),
    Column("pass_rate", Float, nullable=False),
    Column("mean_score", Float, nullable=False),
    Column("cases", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("report", JSON, nullable=False),
    Index("ix_eval_runs_suite_version", "suite", "version"),
)

# The model registry. A registered model's row is also what registrations lock, so
# replicas registering at once still number versions 1, 2, 3 without gaps or clashes.
registry_models = Table(
    "registry_models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

# Versions are immutable once registered; lineage points at another version (base_name,
# base_version) or names an external base model (base_external).
registry_versions = Table(
    "registry_versions",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # "llm" | "classic"
    Column("alias", String(200), nullable=False),
    Column("base_name", String(200), nullable=True),
    Column("base_version", Integer, nullable=True),
    Column("base_external", String(500), nullable=True),
    Column("dataset", String(1000), nullable=True),
    Column("dataset_hash", String(80), nullable=True),
    Column("hyperparameters", JSON, nullable=False, default=dict),
    Column("description", Text, nullable=True),
    Column("tags", JSON, nullable=False, default=list),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    # Classic versions: the artifact served in process, checked against its sha256 when
    # loaded; how it is saved; the tensors it takes and gives; the skops types it may hold;
    # whether a pickle/joblib file may be loaded at all; its training data's statistics.
    Column("artifact", String(1000), nullable=True),
    Column("artifact_sha256", String(80), nullable=True),
    Column("framework", String(16), nullable=True),
    Column("signature", JSON, nullable=True),
    Column("trusted_types", JSON, nullable=True),
    Column("trusted", Boolean, nullable=True),
    Column("feature_stats", JSON, nullable=True),
    # The provider's job a fine-tune was imported from (OpenAI's ftjob-...): one version each.
    Column("job_id", String(200), nullable=True),
    # Per-feature expectations serving checks (classic/expectations.py).
    Column("expectations", JSON, nullable=True),
    Index("ix_registry_versions_base", "base_name", "base_version"),
    Index("ix_registry_versions_job_id", "job_id", unique=True),
    # Replicas poll for classic versions registered since their last look.
    Index("ix_registry_versions_created_at", "created_at"),
)

registry_labels = Table(
    "registry_labels",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("label", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_by", String(200), nullable=False),
)

# Every label move: who approved it, who made it, from, to, and the eval run that allowed it.
registry_label_history = Table(
    "registry_label_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=False),
    Column("approver", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=True),
    Column("eval_suite", String(200), nullable=True),
    Column("eval_run", String(32), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Drift monitoring (gateway/drift/). Samples of calls, taken off the request path: signals as
# JSON `values` ({"output_tokens": 12, "finish_reason": "stop", ...}, or a classic model's
# features and prediction, one row per predicted row), texts, and their embeddings once the
# background job has computed them. Kept as drift.retention says (the job deletes the rest).
drift_samples = Table(
    "drift_samples",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("subject", String(300), nullable=False),
    Column("kind", String(16), nullable=False),  # "llm" | "features"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("prompt_name", String(200), nullable=True),
    Column("prompt_version", String(64), nullable=True),
    Column("alias", String(200), nullable=True),
    Column("values", JSON, nullable=False),
    Column("input_text", Text, nullable=True),
    Column("output_text", Text, nullable=True),
    Column("input_embedding", LargeBinary, nullable=True),  # float32, little-endian
    Column("output_embedding", LargeBinary, nullable=True),
    Index("ix_drift_samples_subject_created", "subject", "created_at"),
)

# A subject's reference, saved as binned statistics when it is made (gateway/drift/sketch.py),
# with the hash of the settings that chose its rows: changed settings make a new one.
drift_references = Table(
    "drift_references",
    metadata,
    Column("subject", String(300), primary_key=True),
    Column("spec", String(64), nullable=False),
    Column("source", String(300), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("made_at", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=True),  # its last sample's time
    Column("body", LargeBinary, nullable=False),  # the sketch as JSON bytes
)

# Every computed comparison: the history GET /v1/monitoring/drift/{subject} answers.
drift_runs = Table(
    "drift_runs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("subject", String(300), nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("state", String(32), nullable=False),
    Column("report", JSON, nullable=False),
    Index("ix_drift_runs_subject_computed", "subject", "computed_at"),
)

# The last verdict per subject. Changed by compare-and-set, so among replicas and the CLI
# exactly one notices each change (and sends the one webhook call for it).
drift_states = Table(
    "drift_states",
    metadata,
    Column("subject", String(300), primary_key=True),
    Column("verdict", String(16), nullable=False),  # "drift" | "no_drift"
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

# Query embeddings: a sample of what the embeddings endpoint answered for the models of the
# collections under `indexes:`, written off the request path (gateway/drift/queries.py), for
# index health's query drift. Each alias keeps its latest rows only.
drift_queries = Table(
    "drift_queries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("alias", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32, little-endian
    Index("ix_drift_queries_alias_id", "alias", "id"),
)
