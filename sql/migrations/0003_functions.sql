-- Migration 3: the queue's operations. Each is one function so that every worker (and the operator, from psql)
-- runs exactly the same statement. A worker identifies itself with p_worker; every write after the
-- claim checks that the job is still leased to that worker, so a worker that lost its lease (it
-- stalled past the lease and another took the job) can never overwrite the new owner's work.

-- Claim the next runnable job in ONE statement: lock a queued row nobody else holds, lease it.
-- attempts is counted here, at claim time, so a worker that dies mid-job still uses up an attempt.
CREATE OR REPLACE FUNCTION apelier.claim_job(p_worker text, p_job_types text[])
RETURNS SETOF public.processing_jobs
LANGUAGE sql AS $fn$
  WITH next AS (
    SELECT id
    FROM public.processing_jobs
    WHERE status = 'queued' AND run_after <= now() AND job_type = ANY (p_job_types)
    ORDER BY priority, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.processing_jobs AS j
  SET status = 'processing',
      attempts = j.attempts + 1,
      locked_by = p_worker,
      heartbeat_at = now(),
      started_at = coalesce(j.started_at, now()),
      completed_at = NULL,
      current_phase = 'starting'
  FROM next
  WHERE j.id = next.id
  RETURNING j.*;
$fn$;

-- Where a job stands for p_worker: its status while leased to p_worker, 'lost' when another worker
-- (or nobody) holds it, 'deleted' when the row is gone (the app deletes finished jobs).
CREATE OR REPLACE FUNCTION apelier.job_state(p_job uuid, p_worker text)
RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(
    (SELECT CASE WHEN locked_by IS DISTINCT FROM p_worker THEN 'lost' ELSE status END
     FROM public.processing_jobs WHERE id = p_job),
    'deleted');
$fn$;

-- Keep the lease alive. Returns the job's state for p_worker: anything but 'processing' means stop.
CREATE OR REPLACE FUNCTION apelier.heartbeat(p_job uuid, p_worker text)
RETURNS text
LANGUAGE sql AS $fn$
  WITH beat AS (
    UPDATE public.processing_jobs SET heartbeat_at = now()
    WHERE id = p_job AND locked_by = p_worker AND status = 'processing'
    RETURNING status
  )
  SELECT coalesce((SELECT status FROM beat), apelier.job_state(p_job, p_worker));
$fn$;

-- A train_style job starts: the profile goes to 'training' only while the job is still leased to
-- p_worker and processing. The job row is updated first, so a cancel that is committing waits for this
-- statement, or this one for it: either the cancel's trigger (0002_queue.sql) finds the profile in
-- 'training' and ends it, or the profile is never moved. Returns the job's state, as heartbeat does
-- (PL/pgSQL: the state is read in a new snapshot, so a cancel this statement waited for is seen).
CREATE OR REPLACE FUNCTION apelier.start_style_training(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  j record;
BEGIN
  UPDATE public.processing_jobs SET heartbeat_at = now()
  WHERE id = p_job AND locked_by = p_worker AND status = 'processing' AND job_type = 'train_style'
  RETURNING style_profile_id, photographer_id INTO j;
  IF NOT FOUND THEN
    RETURN apelier.job_state(p_job, p_worker);
  END IF;
  UPDATE public.style_profiles
  SET training_status = 'training', status = 'training', training_error = NULL,
      training_started_at = now(), updated_at = now()
  WHERE id = j.style_profile_id AND photographer_id = j.photographer_id;
  RETURN 'processing';
END;
$fn$;

-- Progress the app shows live (throttled by the worker to a few writes per second per job).
CREATE OR REPLACE FUNCTION apelier.update_progress(
  p_job uuid, p_worker text, p_phase text, p_processed integer, p_total integer,
  p_progress jsonb, p_phase_timings jsonb)
RETURNS text
LANGUAGE sql AS $fn$
  WITH upd AS (
    UPDATE public.processing_jobs
    SET current_phase = p_phase,
        processed_images = p_processed,
        total_images = p_total,
        progress = p_progress,
        phase_timings = p_phase_timings,
        heartbeat_at = now()
    WHERE id = p_job AND locked_by = p_worker AND status = 'processing'
    RETURNING status
  )
  SELECT coalesce((SELECT status FROM upd), apelier.job_state(p_job, p_worker));
$fn$;

-- Record one finished photo: its row, and the billing counter once per photo ever.
-- Returns the job's state for p_worker; the photo is written only while the worker holds the job
-- (a job canceled mid-photo still records the photo it finished).
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
  -- FOR SHARE: a concurrent requeue of this job waits until the photo is recorded.
  SELECT status, locked_by INTO v_status, v_locked_by
  FROM public.processing_jobs WHERE id = p_job FOR SHARE;
  IF NOT FOUND THEN
    RETURN 'deleted';
  END IF;
  IF v_locked_by IS DISTINCT FROM p_worker THEN
    RETURN 'lost';
  END IF;
  IF v_status NOT IN ('processing', 'canceled') THEN
    RETURN v_status;
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

-- One photo could not be processed: flag it for review with the reason; its earlier outputs stay.
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
  RETURN v_state;
END;
$fn$;

-- Merge gallery-level suggestions (duplicate/burst groups, highlights, cull hints) into ai_edits.culling.
CREATE OR REPLACE FUNCTION apelier.merge_photo_suggestions(p_job uuid, p_worker text, p_suggestions jsonb)
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  v_count integer;
BEGIN
  IF apelier.job_state(p_job, p_worker) <> 'processing' THEN
    RETURN 0;
  END IF;
  UPDATE public.photos AS p
  SET ai_edits = coalesce(p.ai_edits, '{}'::jsonb) || jsonb_build_object('culling', s.value),
      updated_at = now()
  FROM jsonb_each(p_suggestions) AS s
  WHERE p.id = s.key::uuid
    -- only the job's own gallery: a worker's mistake must not write into another photographer's photos
    AND p.gallery_id = (SELECT j.gallery_id FROM public.processing_jobs j WHERE j.id = p_job);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END;
$fn$;

-- The job is done (photos that failed are flagged on their rows and summed up in progress).
CREATE OR REPLACE FUNCTION apelier.complete_job(
  p_job uuid, p_worker text, p_processed integer, p_total integer, p_progress jsonb,
  p_phase_timings jsonb, p_summary text)
RETURNS boolean
LANGUAGE sql AS $fn$
  WITH done AS (
    UPDATE public.processing_jobs
    SET status = 'completed',
        completed_at = now(),
        current_phase = 'complete',
        processed_images = p_processed,
        total_images = p_total,
        progress = p_progress,
        phase_timings = p_phase_timings,
        error_log = p_summary,
        locked_by = NULL,
        heartbeat_at = NULL
    WHERE id = p_job AND locked_by = p_worker AND status = 'processing'
    RETURNING id
  )
  SELECT EXISTS (SELECT 1 FROM done);
$fn$;

-- The job failed: back to the queue after p_retry_in_s seconds, or 'failed' when p_retry_in_s is NULL
-- (the worker's RetryStrategy decides, from attempts and max_attempts).
CREATE OR REPLACE FUNCTION apelier.fail_job(p_job uuid, p_worker text, p_error text, p_retry_in_s double precision)
RETURNS text
LANGUAGE sql AS $fn$
  WITH upd AS (
    UPDATE public.processing_jobs
    SET status = CASE WHEN p_retry_in_s IS NULL THEN 'failed' ELSE 'queued' END,
        run_after = CASE WHEN p_retry_in_s IS NULL THEN run_after
                         ELSE now() + make_interval(secs => p_retry_in_s) END,
        completed_at = CASE WHEN p_retry_in_s IS NULL THEN now() END,
        current_phase = CASE WHEN p_retry_in_s IS NULL THEN 'failed' ELSE 'retrying' END,
        error_log = p_error,
        locked_by = NULL,
        heartbeat_at = NULL
    WHERE id = p_job AND locked_by = p_worker AND status = 'processing'
    RETURNING status
  )
  SELECT coalesce((SELECT status FROM upd), apelier.job_state(p_job, p_worker));
$fn$;

-- Graceful shutdown: give the job back, progress kept, the attempt not counted; another worker
-- (woken by the NOTIFY the status change fires) resumes it.
CREATE OR REPLACE FUNCTION apelier.release_job(p_job uuid, p_worker text)
RETURNS boolean
LANGUAGE sql AS $fn$
  WITH upd AS (
    UPDATE public.processing_jobs
    SET status = 'queued',
        attempts = greatest(attempts - 1, 0),
        locked_by = NULL,
        heartbeat_at = NULL,
        run_after = now(),
        current_phase = 'queued'
    WHERE id = p_job AND locked_by = p_worker AND status = 'processing'
    RETURNING id
  )
  SELECT EXISTS (SELECT 1 FROM upd);
$fn$;

-- After a cancel, the worker that held the job lets go of it.
CREATE OR REPLACE FUNCTION apelier.ack_cancel(p_job uuid, p_worker text, p_processed integer, p_progress jsonb)
RETURNS boolean
LANGUAGE sql AS $fn$
  WITH upd AS (
    UPDATE public.processing_jobs
    SET locked_by = NULL, heartbeat_at = NULL, processed_images = p_processed, progress = p_progress,
        completed_at = coalesce(completed_at, now()), current_phase = 'canceled'
    WHERE id = p_job AND locked_by = p_worker AND status = 'canceled'
    RETURNING id
  )
  SELECT EXISTS (SELECT 1 FROM upd);
$fn$;

-- Cancel: a queued job becomes 'canceled' at once; a processing one too, and its worker sees it
-- within one photo. Returns the new status, or NULL when the job had already ended.
CREATE OR REPLACE FUNCTION apelier.cancel_job(p_job uuid)
RETURNS text
LANGUAGE sql AS $fn$
  UPDATE public.processing_jobs
  SET status = 'canceled',
      current_phase = 'canceled',
      completed_at = CASE WHEN locked_by IS NULL THEN now() ELSE completed_at END
  WHERE id = p_job AND status IN ('queued', 'processing')
  RETURNING status;
$fn$;

-- Any worker may run this: jobs whose worker stopped heartbeating for p_lease_s go back to the queue
-- (or to 'failed' once their attempts are used up). Only rows this worker generation leased
-- (heartbeat_at set) are touched, never historic rows of the app's.
CREATE OR REPLACE FUNCTION apelier.requeue_stale(p_lease_s double precision)
RETURNS TABLE (job_id uuid, new_status text, previous_worker text)
LANGUAGE sql AS $fn$
  WITH stale AS (
    SELECT id, locked_by
    FROM public.processing_jobs
    WHERE status = 'processing'
      AND heartbeat_at IS NOT NULL
      AND heartbeat_at < now() - make_interval(secs => p_lease_s)
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.processing_jobs AS j
  SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
      current_phase = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
      error_log = CASE WHEN j.attempts >= j.max_attempts
                       THEN format('the worker running this job stopped responding (attempt %s of %s); '
                                   'check the worker logs', j.attempts, j.max_attempts)
                       ELSE j.error_log END,
      completed_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
      run_after = now(),
      locked_by = NULL,
      heartbeat_at = NULL
  FROM stale
  WHERE j.id = stale.id
  RETURNING j.id, j.status, stale.locked_by;
$fn$;

-- A daemon says it is alive (and what it is doing) — for `apelier-worker status`.
CREATE OR REPLACE FUNCTION apelier.worker_seen(
  p_worker text, p_hostname text, p_pid integer, p_version text, p_device text, p_state text,
  p_job uuid, p_info jsonb)
RETURNS void
LANGUAGE sql AS $fn$
  INSERT INTO apelier.workers AS w (id, hostname, pid, version, device, state, job_id, info)
  VALUES (p_worker, p_hostname, p_pid, p_version, p_device, p_state, p_job, p_info)
  ON CONFLICT (id) DO UPDATE
  SET last_seen_at = now(), state = excluded.state, job_id = excluded.job_id, info = excluded.info,
      device = excluded.device, version = excluded.version;
$fn$;

-- The worker's functions are for the worker's role only, never for the app's API roles.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apelier FROM PUBLIC;
