-- Migration 2: what the queue needs, added to the app's tables idempotently (running it twice
-- changes nothing).
--
-- Worker-internal state (applied migrations, billing ledger, worker heartbeats) lives in schema
-- "apelier", which Supabase's API does not expose; the app's tables stay in "public".

CREATE SCHEMA IF NOT EXISTS apelier;

-- The schema version of workers released before versioned migrations: they start only where this
-- one row says 3, the schema migrations 1-4 build. It stays 3 while the schema keeps working for
-- them (a rolling upgrade: an old worker that restarts before its box is upgraded goes on); a
-- migration that breaks them sets it to 0. Newer workers read apelier.migrations instead.
CREATE TABLE IF NOT EXISTS apelier.schema_version (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     integer NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO apelier.schema_version (singleton, version) VALUES (true, 3)
ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, applied_at = now()
WHERE apelier.schema_version.version < excluded.version;

-- Queue columns on the app's processing_jobs.
ALTER TABLE public.processing_jobs
    ADD COLUMN IF NOT EXISTS job_type          text NOT NULL DEFAULT 'gallery',
    ADD COLUMN IF NOT EXISTS payload           jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS priority          integer NOT NULL DEFAULT 100,
    ADD COLUMN IF NOT EXISTS run_after         timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS attempts          integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_attempts      integer NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS locked_by         text,
    ADD COLUMN IF NOT EXISTS heartbeat_at      timestamptz,
    ADD COLUMN IF NOT EXISTS progress          jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS phase_timings     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS settings_override jsonb;

-- A training job has no gallery: the NOT NULL gives way to a CHECK per job type.
ALTER TABLE public.processing_jobs ALTER COLUMN gallery_id DROP NOT NULL;

DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conrelid = 'public.processing_jobs'::regclass AND conname = 'processing_jobs_job_type_check') THEN
    ALTER TABLE public.processing_jobs ADD CONSTRAINT processing_jobs_job_type_check
      CHECK (job_type IN ('gallery', 'restyle', 'train_style'));
  END IF;
  -- NOT VALID: checked for every new or changed row, without failing on historic rows.
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conrelid = 'public.processing_jobs'::regclass AND conname = 'processing_jobs_target_check') THEN
    ALTER TABLE public.processing_jobs ADD CONSTRAINT processing_jobs_target_check
      CHECK (CASE job_type WHEN 'train_style' THEN style_profile_id IS NOT NULL
                           ELSE gallery_id IS NOT NULL END) NOT VALID;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conrelid = 'public.processing_jobs'::regclass AND conname = 'processing_jobs_attempts_check') THEN
    ALTER TABLE public.processing_jobs ADD CONSTRAINT processing_jobs_attempts_check
      CHECK (attempts >= 0 AND max_attempts >= 1) NOT VALID;
  END IF;
END
$do$;

CREATE INDEX IF NOT EXISTS processing_jobs_queued_idx
    ON public.processing_jobs (priority, created_at) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS processing_jobs_processing_idx
    ON public.processing_jobs (heartbeat_at) WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS photos_gallery_id_idx ON public.photos (gallery_id);

-- One row per photo ever billed: increment_images_edited runs once per photo, whatever retries or races.
CREATE TABLE IF NOT EXISTS apelier.billed_photos (
    photo_id         uuid PRIMARY KEY,
    photographer_id  uuid NOT NULL,
    job_id           uuid,
    billed_at        timestamptz NOT NULL DEFAULT now()
);

-- Each daemon's heartbeat, for `apelier-worker status` and the operator.
CREATE TABLE IF NOT EXISTS apelier.workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    version       text,
    device        text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    state         text NOT NULL DEFAULT 'starting',
    job_id        uuid,
    info          jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A job put back to 'queued' by the app after it ended (the app re-queues a gallery to process new
-- uploads) starts afresh: its attempts and lease are reset.
CREATE OR REPLACE FUNCTION apelier.reset_requeued_job() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.status = 'queued' AND OLD.status IN ('completed', 'failed', 'canceled', 'delivered') THEN
    NEW.attempts := 0;
    NEW.locked_by := NULL;
    NEW.heartbeat_at := NULL;
    NEW.run_after := least(NEW.run_after, now());
  END IF;
  RETURN NEW;
END;
$fn$;

-- Wake the daemons: a NOTIFY on channel apelier_jobs whenever a job becomes claimable.
CREATE OR REPLACE FUNCTION apelier.notify_job_queued() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('apelier_jobs', NEW.id::text);
  RETURN NULL;
END;
$fn$;

CREATE OR REPLACE TRIGGER apelier_reset_requeued_job
    BEFORE UPDATE OF status ON public.processing_jobs
    FOR EACH ROW EXECUTE FUNCTION apelier.reset_requeued_job();

CREATE OR REPLACE TRIGGER apelier_notify_job_inserted
    AFTER INSERT ON public.processing_jobs
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION apelier.notify_job_queued();

CREATE OR REPLACE TRIGGER apelier_notify_job_requeued
    AFTER UPDATE OF status ON public.processing_jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status IS DISTINCT FROM 'queued')
    EXECUTE FUNCTION apelier.notify_job_queued();

-- A train_style job that ends 'failed' or 'canceled' takes its profile out of 'training', whatever
-- the path: an error the worker saw, a retryable one on the last attempt, an unexpected exception, a
-- worker that stopped responding (requeue_stale), or the app canceling it, running or waiting for a
-- retry. Failed: 'error' with the job's error_log. Canceled: back to 'ready' when the profile has a
-- model from an earlier training (its training_completed_at, the style cache's version, untouched),
-- else 'error', "training canceled".
CREATE OR REPLACE FUNCTION apelier.fail_style_training() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  keep boolean := false;
BEGIN
  IF NEW.status = 'canceled' THEN
    -- A model galleries apply: ours (model_key) or the app's legacy one (worker/style/cache.py).
    SELECT p.model_key IS NOT NULL OR p.model_weights_key IS NOT NULL INTO keep FROM public.style_profiles p
    WHERE p.id = NEW.style_profile_id AND p.photographer_id = NEW.photographer_id;
  END IF;
  UPDATE public.style_profiles
  SET training_status = CASE WHEN coalesce(keep, false) THEN 'ready' ELSE 'error' END,
      status = CASE WHEN coalesce(keep, false) THEN 'ready' ELSE 'error' END,
      training_error = CASE
        WHEN NEW.status = 'failed' THEN coalesce(NEW.error_log, 'training failed; see the worker logs')
        WHEN coalesce(keep, false) THEN NULL
        ELSE 'training canceled' END,
      training_completed_at = CASE WHEN coalesce(keep, false) THEN training_completed_at ELSE now() END,
      updated_at = now()
  WHERE id = NEW.style_profile_id AND photographer_id = NEW.photographer_id AND training_status = 'training';
  RETURN NULL;
END;
$fn$;

CREATE OR REPLACE TRIGGER apelier_fail_style_training
    AFTER UPDATE OF status ON public.processing_jobs
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'canceled') AND OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.job_type = 'train_style')
    EXECUTE FUNCTION apelier.fail_style_training();
