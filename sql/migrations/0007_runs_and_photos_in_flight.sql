-- Migration 7: an attempt counts only the job's own failures; a photo that keeps killing its worker
-- is failed alone; every photo a failed or canceled job did not edit says why; outputs uploaded for
-- photos that were never recorded are remembered, so that they can be removed.
--
-- It only adds (tables, functions, triggers) and replaces the bodies of finish_photo (as migration 6
-- left it), fail_photo and requeue_stale, keeping their signatures: workers of an older release keep
-- working on it. They never say that their set-up is done, so their runs stay in 'setup' and a death
-- counts as it did before. A cancel is what migration 6 says: 'canceled', or 'failed' written by the
-- app while a worker holds the job (or while it waits in the queue).

-- One row per job: its current (or last) run, opened by the claim (trigger below).
CREATE TABLE IF NOT EXISTS apelier.job_runs (
    job_id       uuid PRIMARY KEY REFERENCES public.processing_jobs (id) ON DELETE CASCADE,
    worker       text NOT NULL,                  -- locked_by at the claim
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    stage        text NOT NULL DEFAULT 'setup',  -- 'setup' until the job's own set-up is done, then 'photos'
    edited       integer NOT NULL DEFAULT 0,     -- photos this run edited: its progress
    free_streak  integer NOT NULL DEFAULT 0      -- attempts given back in a row without a photo edited
);

-- Photos a run is processing (from decode to encoded outputs: the work that can run a box out of
-- memory), and the runs that died while processing them. Downloads and uploads are not in it: a
-- worker killed while it waits on storage is no sign against a photo.
CREATE TABLE IF NOT EXISTS apelier.photos_in_flight (
    job_id       uuid NOT NULL REFERENCES public.processing_jobs (id) ON DELETE CASCADE,
    photo_id     uuid NOT NULL,
    worker       text,                           -- processing it now; NULL when nobody is
    started_at   timestamptz,
    deaths       integer NOT NULL DEFAULT 0,     -- runs of this job that died while processing it
    isolated_at  timestamptz,                    -- failed alone after killing its worker; the job skips it
    PRIMARY KEY (job_id, photo_id)
);

-- Outputs uploaded (or being uploaded) for a photo whose row does not name them yet. finish_photo
-- removes the keys it records; what is left once the job has ended was never recorded, and the
-- worker deletes it from storage (apelier.unrecorded_outputs), unless the photo's row names the key.
CREATE TABLE IF NOT EXISTS apelier.pending_outputs (
    job_id      uuid NOT NULL,                   -- no foreign key: outputs of a deleted job are removed too
    photo_id    uuid NOT NULL,
    key         text NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, key)
);

-- A claim opens a run. Photos an earlier run was processing when it ended without dying (failed,
-- released, canceled) are not in flight any more; their deaths, if any, are kept.
CREATE OR REPLACE FUNCTION apelier.open_job_run() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO apelier.job_runs AS r (job_id, worker, claimed_at, stage, edited)
  VALUES (NEW.id, NEW.locked_by, now(), 'setup', 0)
  ON CONFLICT (job_id) DO UPDATE
  SET worker = excluded.worker, claimed_at = excluded.claimed_at, stage = 'setup', edited = 0;
  DELETE FROM apelier.photos_in_flight f WHERE f.job_id = NEW.id AND f.deaths = 0;
  UPDATE apelier.photos_in_flight f SET worker = NULL WHERE f.job_id = NEW.id AND f.worker IS NOT NULL;
  RETURN NULL;
END;
$fn$;

CREATE OR REPLACE TRIGGER apelier_open_job_run
    AFTER UPDATE OF locked_by ON public.processing_jobs
    FOR EACH ROW WHEN (NEW.status = 'processing' AND NEW.locked_by IS NOT NULL
                       AND NEW.locked_by IS DISTINCT FROM OLD.locked_by)
    EXECUTE FUNCTION apelier.open_job_run();

-- A gallery or restyle job that ends failed or canceled, by whatever path (the worker, requeue_stale,
-- the app's own UPDATE, its cancel as 'failed' included): every photo it covers and did not edit gets
-- needs_review and
-- ai_edits.error = {phase: 'job', reason, job_id, kind: 'JobFailed' or 'JobCanceled'}, unless the
-- photo already has a reason of its own (an error of any other kind: unreadable, stopped the worker…). A restyle's photos keep their
-- previous edit and say that the restyle did not reach them. Only the job's photographer's photos
-- (the app's insert policy checks photographer_id only, and this runs with the owner's rights).
-- Any ended job drops its run and the in-flight rows that are not isolated photos.
CREATE OR REPLACE FUNCTION apelier.job_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_reason text;
  v_ids jsonb := '[]'::jsonb;
  -- The app's cancel is 'failed' while a worker holds the job, or on a job waiting in the queue (the
  -- worker's own failures let go of the job in the same statement, and it never fails a queued one).
  v_canceled boolean := NEW.status = 'canceled'
                        OR (NEW.status = 'failed' AND (NEW.locked_by IS NOT NULL OR OLD.status = 'queued'));
BEGIN
  IF NEW.status IN ('failed', 'canceled') AND NEW.job_type IN ('gallery', 'restyle') AND NEW.gallery_id IS NOT NULL THEN
    v_reason := CASE
      WHEN v_canceled AND NEW.job_type = 'restyle'
        THEN 'not restyled: the job was canceled before it got to this photo; it keeps its previous edit'
      WHEN v_canceled
        THEN 'not edited: the job was canceled before it got to this photo; queue the gallery again to edit it'
      WHEN NEW.job_type = 'restyle'
        THEN format('not restyled: the job failed before it got to this photo (%s); it keeps its previous edit',
                    left(coalesce(NEW.error_log, 'see the worker logs'), 300))
      ELSE format('not edited: the job failed before it got to this photo (%s); queue the gallery again to edit it',
                  left(coalesce(NEW.error_log, 'see the worker logs'), 300))
    END;
    IF jsonb_typeof(NEW.payload -> 'photo_ids') = 'array' THEN
      v_ids := NEW.payload -> 'photo_ids';
    END IF;
    UPDATE public.photos p
    SET needs_review = true,
        ai_edits = coalesce(p.ai_edits, '{}'::jsonb) || jsonb_build_object('error', jsonb_build_object(
          'phase', 'job', 'reason', v_reason, 'job_id', NEW.id::text,
          'kind', CASE WHEN v_canceled THEN 'JobCanceled' ELSE 'JobFailed' END)),
        updated_at = now()
    WHERE p.gallery_id = NEW.gallery_id
      AND p.photographer_id = NEW.photographer_id
      AND NOT p.is_culled
      AND CASE WHEN NEW.job_type = 'restyle'
               THEN v_ids ? p.id::text AND (p.ai_edits ->> 'job_id') IS DISTINCT FROM NEW.id::text
               ELSE p.status NOT IN ('edited', 'approved', 'delivered') END
      AND coalesce(p.ai_edits -> 'error' ->> 'kind', '') IN ('', 'JobFailed', 'JobCanceled');
  END IF;
  DELETE FROM apelier.photos_in_flight f WHERE f.job_id = NEW.id AND f.isolated_at IS NULL;
  DELETE FROM apelier.job_runs r WHERE r.job_id = NEW.id;
  RETURN NULL;
END;
$fn$;

CREATE OR REPLACE TRIGGER apelier_job_ended
    AFTER UPDATE OF status ON public.processing_jobs
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed', 'canceled', 'delivered')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION apelier.job_ended();

-- The job's state for p_worker (apelier.job_state) with its row locked FOR SHARE first, so that a
-- concurrent requeue or cancel waits for the caller's statement, or the caller for it.
CREATE OR REPLACE FUNCTION apelier.locked_job_state(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM public.processing_jobs WHERE id = p_job FOR SHARE;
  RETURN apelier.job_state(p_job, p_worker);
END;
$fn$;

-- The job's own set-up (its photos listed, style model and watermark loaded) is done: from now on a
-- death with no photo being processed is the infrastructure's, not the job's.
CREATE OR REPLACE FUNCTION apelier.job_setup_done(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text := apelier.locked_job_state(p_job, p_worker);
BEGIN
  IF v_state = 'processing' THEN
    UPDATE apelier.job_runs SET stage = 'photos' WHERE job_id = p_job AND worker = p_worker;
  END IF;
  RETURN v_state;
END;
$fn$;

-- A photo starts being processed (its bytes are downloaded; decoding begins).
CREATE OR REPLACE FUNCTION apelier.photo_started(p_job uuid, p_worker text, p_photo uuid)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text := apelier.locked_job_state(p_job, p_worker);
BEGIN
  IF v_state = 'processing' THEN
    INSERT INTO apelier.photos_in_flight AS f (job_id, photo_id, worker, started_at)
    VALUES (p_job, p_photo, p_worker, now())
    ON CONFLICT (job_id, photo_id) DO UPDATE SET worker = excluded.worker, started_at = excluded.started_at;
  END IF;
  RETURN v_state;
END;
$fn$;

-- A photo's outputs are encoded: it is no longer processed, and p_keys are about to be uploaded
-- (remembered until finish_photo records them). Only while the job is processing: after a cancel
-- nothing more is recorded (migration 6), so the worker uploads nothing more either.
CREATE OR REPLACE FUNCTION apelier.photo_processed(p_job uuid, p_worker text, p_photo uuid, p_keys text[])
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text := apelier.locked_job_state(p_job, p_worker);
BEGIN
  IF v_state <> 'processing' THEN
    RETURN v_state;
  END IF;
  DELETE FROM apelier.photos_in_flight f
  WHERE f.job_id = p_job AND f.photo_id = p_photo AND f.worker = p_worker AND f.deaths = 0;
  UPDATE apelier.photos_in_flight f SET worker = NULL
  WHERE f.job_id = p_job AND f.photo_id = p_photo AND f.worker = p_worker;
  INSERT INTO apelier.pending_outputs AS o (job_id, photo_id, key)
  SELECT p_job, p_photo, k FROM unnest(p_keys) AS k
  ON CONFLICT (job_id, key) DO UPDATE SET photo_id = excluded.photo_id, written_at = now();
  RETURN v_state;
END;
$fn$;

-- Record one finished photo: its row, and the billing counter once per photo ever, only while the
-- job is processing (as migration 6); and now also: the photo is out of flight, the keys its row
-- names are no longer pending, and the run made progress.
CREATE OR REPLACE FUNCTION apelier.finish_photo(
  p_job uuid, p_worker text, p_photo uuid, p_fields jsonb, p_bill boolean)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_status text;
  v_locked_by text;
  v_photographer uuid;
  v_new integer;
BEGIN
  -- FOR SHARE: a concurrent cancel or requeue of this job waits until the photo is recorded, or
  -- this statement for it (then the photo is not recorded).
  SELECT status, locked_by INTO v_status, v_locked_by
  FROM public.processing_jobs WHERE id = p_job FOR SHARE;
  IF NOT FOUND THEN
    RETURN 'deleted';
  END IF;
  IF v_locked_by IS DISTINCT FROM p_worker OR v_status <> 'processing' THEN
    RETURN apelier.job_state(p_job, p_worker);
  END IF;

  UPDATE public.photos
  SET edited_key      = p_fields->>'edited_key',
      web_key         = p_fields->>'web_key',
      thumb_key       = p_fields->>'thumb_key',
      watermarked_key = p_fields->>'watermarked_key',
      width           = (p_fields->>'width')::integer,
      height          = (p_fields->>'height')::integer,
      exif_data       = coalesce(p_fields->'exif_data', exif_data),
      quality_score   = coalesce((p_fields->>'quality_score')::integer, quality_score),
      face_data       = coalesce(p_fields->'face_data', face_data),
      scene_type      = coalesce(p_fields->>'scene_type', scene_type),
      ai_edits        = coalesce(p_fields->'ai_edits', '{}'::jsonb),
      edit_confidence = (p_fields->>'edit_confidence')::double precision,
      needs_review    = coalesce((p_fields->>'needs_review')::boolean, false),
      status          = 'edited',
      updated_at      = now()
  WHERE id = p_photo
  RETURNING photographer_id INTO v_photographer;

  IF FOUND THEN
    DELETE FROM apelier.photos_in_flight f WHERE f.job_id = p_job AND f.photo_id = p_photo;
    DELETE FROM apelier.pending_outputs o
    WHERE o.job_id = p_job AND o.photo_id = p_photo
      AND o.key IN (p_fields->>'edited_key', p_fields->>'web_key', p_fields->>'thumb_key',
                    p_fields->>'watermarked_key');
    UPDATE apelier.job_runs r SET edited = r.edited + 1, free_streak = 0
    WHERE r.job_id = p_job AND r.worker = p_worker;
  END IF;

  IF FOUND AND p_bill THEN
    INSERT INTO apelier.billed_photos (photo_id, photographer_id, job_id)
    VALUES (p_photo, v_photographer, p_job)
    ON CONFLICT (photo_id) DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    IF v_new = 1 THEN
      PERFORM public.increment_images_edited(v_photographer, 1);
    END IF;
  END IF;
  RETURN v_status;
END;
$fn$;

-- One photo could not be processed: flag it for review with the reason; its earlier outputs stay
-- (as migration 3, with migration 6's job_state); it is out of flight. A failed photo is no progress:
-- the next attempt tries it again.
CREATE OR REPLACE FUNCTION apelier.fail_photo(p_job uuid, p_worker text, p_photo uuid, p_error jsonb)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text;
BEGIN
  v_state := apelier.job_state(p_job, p_worker);
  IF v_state NOT IN ('processing', 'canceled') THEN
    RETURN v_state;
  END IF;
  UPDATE public.photos
  SET needs_review = true,
      ai_edits = coalesce(ai_edits, '{}'::jsonb) || jsonb_build_object('error', p_error),
      updated_at = now()
  WHERE id = p_photo;
  DELETE FROM apelier.photos_in_flight f
  WHERE f.job_id = p_job AND f.photo_id = p_photo AND f.isolated_at IS NULL;
  RETURN v_state;
END;
$fn$;

-- The worker's run of a job failed (an exception it caught). The attempt counts against max_attempts
-- only when the run edited no photo and the cause is the job's own (p_outside false: not the
-- database, not a storage outage); ten such free attempts in a row without a photo edited and it
-- counts anyway, so a cause wrongly taken for the infrastructure's cannot loop forever. An attempt
-- that does not count is given back. Then: queued again after p_retry_in_s, or 'failed' when
-- p_retry_in_s is NULL (not retryable) or a counted attempt was the last.
CREATE OR REPLACE FUNCTION apelier.end_attempt(
  p_job uuid, p_worker text, p_error text, p_retry_in_s double precision, p_outside boolean)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_attempts integer;
  v_max integer;
  v_edited integer;
  v_streak integer;
  v_counted boolean;
  v_failed boolean;
BEGIN
  SELECT attempts, max_attempts INTO v_attempts, v_max
  FROM public.processing_jobs WHERE id = p_job AND locked_by = p_worker AND status = 'processing' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN apelier.job_state(p_job, p_worker);
  END IF;
  SELECT r.edited, r.free_streak INTO v_edited, v_streak
  FROM apelier.job_runs r WHERE r.job_id = p_job AND r.worker = p_worker;
  v_counted := coalesce(v_edited, 0) = 0 AND (NOT p_outside OR coalesce(v_streak, 0) >= 10);
  v_failed := p_retry_in_s IS NULL OR (v_counted AND v_attempts >= v_max);

  UPDATE apelier.job_runs r
  SET free_streak = CASE WHEN coalesce(v_edited, 0) > 0 THEN 0
                         WHEN v_counted THEN r.free_streak ELSE r.free_streak + 1 END
  WHERE r.job_id = p_job;
  -- The photos it was processing did not stop it: not in flight any more.
  DELETE FROM apelier.photos_in_flight f WHERE f.job_id = p_job AND f.worker = p_worker AND f.deaths = 0;
  UPDATE apelier.photos_in_flight f SET worker = NULL WHERE f.job_id = p_job AND f.worker = p_worker;

  UPDATE public.processing_jobs
  SET status = CASE WHEN v_failed THEN 'failed' ELSE 'queued' END,
      attempts = CASE WHEN v_counted THEN attempts ELSE greatest(attempts - 1, 0) END,
      run_after = CASE WHEN v_failed THEN run_after ELSE now() + make_interval(secs => p_retry_in_s) END,
      completed_at = CASE WHEN v_failed THEN now() END,
      current_phase = CASE WHEN v_failed THEN 'failed' ELSE 'retrying' END,
      error_log = p_error,
      locked_by = NULL,
      heartbeat_at = NULL
  WHERE id = p_job;
  RETURN CASE WHEN v_failed THEN 'failed' ELSE 'queued' END;
END;
$fn$;

-- Any worker may run this: jobs whose worker stopped heartbeating for p_lease_s go back to the queue
-- (or to 'failed'). Only rows this worker generation leased (heartbeat_at set) are touched. Per job:
-- * the photos its run was processing get one more death. The first death of a photo may have been
--   shared with the photos processed beside it; from then on it is processed alone, and a photo
--   that kills its worker max_attempts more times (max_attempts + 1 deaths: 4 with the app's
--   default 3) is failed alone (needs_review, ai_edits.error) and skipped from then on. A random
--   kill that lands p of the time while a photo is processed alone fails an innocent photo with
--   probability p^max_attempts;
-- * the attempt counts only when the run edited no photo, isolated none, and the job's own work was
--   running when it died: its set-up, or a photo that had already killed a worker while processed
--   alone (a second death alone is evidence; a first may be chance). A worker killed while it waited
--   on storage or the database, or while processing other photos, gives the attempt back; ten free
--   attempts in a row without a photo edited and it counts anyway. A counted attempt that was the
--   last fails the job. Bounded: every death adds to a photo's deaths, or counts, or is one of ten.
CREATE OR REPLACE FUNCTION apelier.requeue_stale(p_lease_s double precision)
RETURNS TABLE (job_id uuid, new_status text, previous_worker text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  j record;
  v_stage text;
  v_edited integer;
  v_streak integer;
  v_repeat boolean;
  v_isolated integer;
  v_progress boolean;
  v_counted boolean;
  v_failed boolean;
BEGIN
  FOR j IN
    SELECT p.id, p.locked_by, p.attempts, p.max_attempts
    FROM public.processing_jobs p
    WHERE p.status = 'processing'
      AND p.heartbeat_at IS NOT NULL
      AND p.heartbeat_at < now() - make_interval(secs => p_lease_s)
    FOR UPDATE SKIP LOCKED
  LOOP
    v_stage := NULL;
    v_edited := 0;
    v_streak := 0;
    SELECT r.stage, r.edited, r.free_streak INTO v_stage, v_edited, v_streak
    FROM apelier.job_runs r WHERE r.job_id = j.id AND r.worker = j.locked_by;

    WITH died AS (
      UPDATE apelier.photos_in_flight f
      SET deaths = f.deaths + 1, worker = NULL,
          isolated_at = CASE WHEN f.deaths + 1 > j.max_attempts THEN now() END
      WHERE f.job_id = j.id AND f.worker = j.locked_by
      RETURNING f.photo_id, f.deaths, f.isolated_at
    ), flagged AS (
      UPDATE public.photos ph
      SET needs_review = true,
          ai_edits = coalesce(ph.ai_edits, '{}'::jsonb) || jsonb_build_object('error', jsonb_build_object(
            'phase', 'processing', 'job_id', j.id::text, 'kind', 'WorkerCrash',
            'reason', format('processing this photo stopped the worker %s times (out of memory?), so it was '
                             'skipped; export it with fewer megapixels and upload it again', died.deaths))),
          updated_at = now()
      FROM died
      WHERE ph.id = died.photo_id AND died.isolated_at IS NOT NULL
      RETURNING ph.id
    )
    SELECT coalesce(bool_or(died.deaths > 2), false), (SELECT count(*) FROM flagged)
    INTO v_repeat, v_isolated
    FROM died;

    v_progress := coalesce(v_edited, 0) > 0 OR v_isolated > 0;
    v_counted := NOT v_progress
                 AND (v_stage IS NULL OR v_stage = 'setup' OR v_repeat OR coalesce(v_streak, 0) >= 10);
    v_failed := v_counted AND j.attempts >= j.max_attempts;

    UPDATE apelier.job_runs r
    SET free_streak = CASE WHEN v_progress THEN 0 WHEN v_counted THEN r.free_streak ELSE r.free_streak + 1 END
    WHERE r.job_id = j.id;

    UPDATE public.processing_jobs p
    SET status = CASE WHEN v_failed THEN 'failed' ELSE 'queued' END,
        current_phase = CASE WHEN v_failed THEN 'failed' ELSE 'queued' END,
        attempts = CASE WHEN v_counted THEN p.attempts ELSE greatest(p.attempts - 1, 0) END,
        error_log = CASE WHEN v_failed
                         THEN format('the worker running this job stopped responding (attempt %s of %s); '
                                     'check the worker logs', p.attempts, p.max_attempts)
                         ELSE p.error_log END,
        completed_at = CASE WHEN v_failed THEN now() END,
        run_after = now(),
        locked_by = NULL,
        heartbeat_at = NULL
    WHERE p.id = j.id;

    job_id := j.id;
    new_status := CASE WHEN v_failed THEN 'failed' ELSE 'queued' END;
    previous_worker := j.locked_by;
    RETURN NEXT;
  END LOOP;
END;
$fn$;

-- Outputs no run will record any more: their job ended (or its row is gone) at least p_lease_s ago
-- and nobody holds it. referenced: the photo's row names the key (an earlier edit at the same key):
-- the worker forgets it and never deletes it. photographer_id: whose folder the key must be in.
CREATE OR REPLACE FUNCTION apelier.unrecorded_outputs(p_lease_s double precision, p_limit integer)
RETURNS TABLE (job_id uuid, key text, photographer_id uuid, referenced boolean)
LANGUAGE sql STABLE AS $fn$
  SELECT o.job_id, o.key, coalesce(ph.photographer_id, j.photographer_id),
         coalesce(o.key IN (ph.edited_key, ph.web_key, ph.thumb_key, ph.watermarked_key), false)
  FROM apelier.pending_outputs o
  LEFT JOIN public.processing_jobs j ON j.id = o.job_id
  LEFT JOIN public.photos ph ON ph.id = o.photo_id
  WHERE o.written_at < now() - make_interval(secs => p_lease_s)
    AND (j.id IS NULL
         OR (j.status NOT IN ('queued', 'processing')
             AND (j.locked_by IS NULL OR j.heartbeat_at IS NULL
                  OR j.heartbeat_at < now() - make_interval(secs => p_lease_s))))
  ORDER BY o.written_at
  LIMIT p_limit;
$fn$;

CREATE OR REPLACE FUNCTION apelier.forget_output(p_job uuid, p_key text)
RETURNS void
LANGUAGE sql AS $fn$
  DELETE FROM apelier.pending_outputs WHERE job_id = p_job AND key = p_key;
$fn$;

-- The worker's functions are for the worker's role only, never for the app's API roles.
REVOKE ALL ON FUNCTION apelier.open_job_run(), apelier.job_ended(), apelier.locked_job_state(uuid, text),
  apelier.job_setup_done(uuid, text), apelier.photo_started(uuid, text, uuid),
  apelier.photo_processed(uuid, text, uuid, text[]), apelier.finish_photo(uuid, text, uuid, jsonb, boolean),
  apelier.fail_photo(uuid, text, uuid, jsonb),
  apelier.end_attempt(uuid, text, text, double precision, boolean), apelier.requeue_stale(double precision),
  apelier.unrecorded_outputs(double precision, integer), apelier.forget_output(uuid, text)
FROM PUBLIC;

-- The worker's own role (migration 5): the new operations, and the tables they touch as their caller.
-- (The two triggers run with the owner's rights: the app's cancel fires one.)
GRANT SELECT, INSERT, UPDATE, DELETE ON apelier.job_runs, apelier.photos_in_flight, apelier.pending_outputs
  TO apelier_worker;
GRANT EXECUTE ON FUNCTION
    apelier.locked_job_state(uuid, text),
    apelier.job_setup_done(uuid, text),
    apelier.photo_started(uuid, text, uuid),
    apelier.photo_processed(uuid, text, uuid, text[]),
    apelier.end_attempt(uuid, text, text, double precision, boolean),
    apelier.unrecorded_outputs(double precision, integer),
    apelier.forget_output(uuid, text)
  TO apelier_worker;
