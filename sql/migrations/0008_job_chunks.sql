-- Migration 8: one big gallery over several workers.
--
-- A worker that claims a gallery or restyle job with more photos to edit than its WORKER_CHUNK_PHOTOS
-- splits it (apelier.split_job): the photos go into chunks (apelier.job_chunks), and the job row stays
-- 'processing' with locked_by = 'apelier:chunks', held by nobody in particular. Any idle worker then
-- claims one chunk at a time (apelier.claim_chunk: one statement, SKIP LOCKED, attempts counted at
-- claim time), with a lease and heartbeats of its own, and runs it as it runs a job. Whoever holds a
-- chunk of a split job may do to the job what its holder may do to a job it holds: job_state answers
-- for it, so every per-photo operation (photo_started, photo_processed, finish_photo, fail_photo) and
-- heartbeat, update_progress, end_attempt, release_job and ack_cancel work unchanged for chunks, with
-- the same signatures. The chunk that ends last (apelier.end_chunk, which takes every chunk's end one
-- at a time on the job row's lock) gets the job's lease back for its worker, which finalises the
-- gallery (culling over all its photos, complete_job) as any job's holder does. A chunk whose worker
-- dies is requeued by requeue_stale with the same rules a job has (deaths of its photos in flight,
-- an attempt counted only for the chunk's own failures); a chunk out of attempts fails the job.
-- A cancel (either form) reaches every chunk: queued ones are never claimed, their holders read
-- 'canceled' and let go; the job lets go of 'apelier:chunks' once nobody holds a chunk.
--
-- It only adds (a table, functions) and replaces bodies with their signatures kept; a job never
-- split behaves as before, so workers of the previous release keep working on it (they never split
-- a job, and never claim a chunk: a split job is 'processing', not claimable).

CREATE TABLE IF NOT EXISTS apelier.job_chunks (
    job_id        uuid NOT NULL REFERENCES public.processing_jobs (id) ON DELETE CASCADE,
    chunk         integer NOT NULL,                -- 0, 1, … in the order the splitting run chose
    photo_ids     uuid[] NOT NULL,
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'processing', 'done', 'canceled')),
    attempts      integer NOT NULL DEFAULT 0,      -- counted at claim time, given back as a job's are
    run_after     timestamptz NOT NULL DEFAULT now(),
    locked_by     text,                            -- its worker; kept after a cancel until that worker lets go
    heartbeat_at  timestamptz,
    stage         text NOT NULL DEFAULT 'setup',   -- as apelier.job_runs: 'setup', then 'photos'
    edited        integer NOT NULL DEFAULT 0,      -- photos this run of the chunk edited
    free_streak   integer NOT NULL DEFAULT 0,      -- attempts given back in a row without a photo edited
    started_at    timestamptz,
    ended_at      timestamptz,
    PRIMARY KEY (job_id, chunk)
);
CREATE INDEX IF NOT EXISTS job_chunks_queued_idx ON apelier.job_chunks (run_after) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS job_chunks_held_idx ON apelier.job_chunks (locked_by) WHERE locked_by IS NOT NULL;

-- Where a job stands for p_worker (as migration 6), and for the holder of one of its chunks while the
-- job is split: the job's status, the app's 'failed' read as its cancel.
CREATE OR REPLACE FUNCTION apelier.job_state(p_job uuid, p_worker text)
RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(
    (SELECT CASE WHEN j.locked_by = 'apelier:chunks'
                      AND EXISTS (SELECT 1 FROM apelier.job_chunks c WHERE c.job_id = j.id AND c.locked_by = p_worker)
                   THEN CASE WHEN j.status = 'failed' THEN 'canceled' ELSE j.status END
                 WHEN j.locked_by IS DISTINCT FROM p_worker THEN 'lost'
                 WHEN j.status = 'failed' THEN 'canceled'  -- failed by the app while leased: its cancel
                 ELSE j.status END
     FROM public.processing_jobs j WHERE j.id = p_job),
    'deleted');
$fn$;

-- The chunks of a job, counted, for its progress.
CREATE OR REPLACE FUNCTION apelier.chunk_counts(p_job uuid)
RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
  SELECT jsonb_build_object('total', count(*), 'done', count(*) FILTER (WHERE status = 'done'),
                            'running', count(*) FILTER (WHERE status = 'processing'))
  FROM apelier.job_chunks WHERE job_id = p_job;
$fn$;

-- Every function below that touches a job row and a chunk row locks the job row first, so that no two
-- of them (a chunk's heartbeat and its end, two reapers) wait on each other in opposite orders.

-- Keep the lease alive: the job's, or the chunk's (and the job row's heartbeat_at, which the app reads).
CREATE OR REPLACE FUNCTION apelier.heartbeat(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE public.processing_jobs SET heartbeat_at = now()
  WHERE id = p_job AND locked_by = p_worker AND status = 'processing';
  IF NOT FOUND THEN
    UPDATE public.processing_jobs j SET heartbeat_at = now()
    WHERE j.id = p_job AND j.locked_by = 'apelier:chunks' AND j.status = 'processing'
      AND EXISTS (SELECT 1 FROM apelier.job_chunks c
                  WHERE c.job_id = p_job AND c.locked_by = p_worker AND c.status = 'processing');
    IF FOUND THEN
      UPDATE apelier.job_chunks SET heartbeat_at = now()
      WHERE job_id = p_job AND locked_by = p_worker AND status = 'processing';
    END IF;
  END IF;
  RETURN apelier.job_state(p_job, p_worker);
END;
$fn$;

-- Progress. From a chunk's holder: the counts stay the job's (finish_photo keeps processed_images),
-- the rest of progress is the chunk's, with the job's processed/total and its chunks counted.
CREATE OR REPLACE FUNCTION apelier.update_progress(
  p_job uuid, p_worker text, p_phase text, p_processed integer, p_total integer,
  p_progress jsonb, p_phase_timings jsonb)
RETURNS text
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE public.processing_jobs
  SET current_phase = p_phase, processed_images = p_processed, total_images = p_total, progress = p_progress,
      phase_timings = p_phase_timings, heartbeat_at = now()
  WHERE id = p_job AND locked_by = p_worker AND status = 'processing';
  IF NOT FOUND AND apelier.job_state(p_job, p_worker) = 'processing' THEN
    UPDATE public.processing_jobs j
    SET current_phase = p_phase,
        progress = p_progress || jsonb_build_object('processed', j.processed_images, 'total', j.total_images,
                                                    'chunks', apelier.chunk_counts(p_job)),
        phase_timings = p_phase_timings,
        heartbeat_at = now()
    WHERE j.id = p_job AND j.locked_by = 'apelier:chunks' AND j.status = 'processing';
  END IF;
  RETURN apelier.job_state(p_job, p_worker);
END;
$fn$;

-- Record one finished photo (as migration 7), by the job's holder or a chunk's. For a chunk: the chunk
-- made progress, and the job's processed_images counts the photo (never past total_images). The job
-- row is locked for update (not share): two chunks' photos may be recorded at once.
CREATE OR REPLACE FUNCTION apelier.finish_photo(
  p_job uuid, p_worker text, p_photo uuid, p_fields jsonb, p_bill boolean)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_status text;
  v_locked_by text;
  v_state text;
  v_photographer uuid;
  v_found boolean;
  v_new integer;
BEGIN
  SELECT status, locked_by INTO v_status, v_locked_by
  FROM public.processing_jobs WHERE id = p_job FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN 'deleted';
  END IF;
  v_state := apelier.job_state(p_job, p_worker);
  IF v_status <> 'processing' OR v_state <> 'processing' THEN
    RETURN v_state;
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
  v_found := FOUND;

  IF v_found THEN
    DELETE FROM apelier.photos_in_flight f WHERE f.job_id = p_job AND f.photo_id = p_photo;
    DELETE FROM apelier.pending_outputs o
    WHERE o.job_id = p_job AND o.photo_id = p_photo
      AND o.key IN (p_fields->>'edited_key', p_fields->>'web_key', p_fields->>'thumb_key',
                    p_fields->>'watermarked_key');
    IF v_locked_by = 'apelier:chunks' THEN
      UPDATE apelier.job_chunks c SET edited = c.edited + 1, free_streak = 0
      WHERE c.job_id = p_job AND c.locked_by = p_worker;
      UPDATE public.processing_jobs j
      SET processed_images = CASE WHEN j.total_images > 0 THEN least(j.total_images, j.processed_images + 1)
                                  ELSE j.processed_images + 1 END
      WHERE j.id = p_job;
    ELSE
      UPDATE apelier.job_runs r SET edited = r.edited + 1, free_streak = 0
      WHERE r.job_id = p_job AND r.worker = p_worker;
    END IF;
  END IF;

  IF v_found AND p_bill THEN
    INSERT INTO apelier.billed_photos (photo_id, photographer_id, job_id)
    VALUES (p_photo, v_photographer, p_job)
    ON CONFLICT (photo_id) DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    IF v_new = 1 THEN
      PERFORM public.increment_images_edited(v_photographer, 1);
    END IF;
  END IF;
  RETURN v_state;
END;
$fn$;

-- The job's own set-up is done (as migration 7), for a chunk's run too.
CREATE OR REPLACE FUNCTION apelier.job_setup_done(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text := apelier.locked_job_state(p_job, p_worker);
BEGIN
  IF v_state = 'processing' THEN
    UPDATE apelier.job_runs SET stage = 'photos' WHERE job_id = p_job AND worker = p_worker;
    UPDATE apelier.job_chunks SET stage = 'photos' WHERE job_id = p_job AND locked_by = p_worker AND status = 'processing';
  END IF;
  RETURN v_state;
END;
$fn$;

-- Split a job p_worker holds: p_photos (those still to edit, in the order to run them) in chunks of
-- p_chunk_size, replacing any chunks of an earlier split (all ended: the job was held). The job row
-- keeps processed_images/total_images as given and is held by 'apelier:chunks' from now on; idle
-- workers are woken. Returns the job's state for p_worker before the split ('processing': split).
CREATE OR REPLACE FUNCTION apelier.split_job(
  p_job uuid, p_worker text, p_photos uuid[], p_chunk_size integer, p_processed integer, p_total integer)
RETURNS text
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM public.processing_jobs
  WHERE id = p_job AND locked_by = p_worker AND status = 'processing' FOR NO KEY UPDATE;
  IF NOT FOUND OR p_chunk_size < 1 OR coalesce(cardinality(p_photos), 0) = 0 THEN
    RETURN apelier.job_state(p_job, p_worker);
  END IF;
  DELETE FROM apelier.job_chunks WHERE job_id = p_job;
  INSERT INTO apelier.job_chunks (job_id, chunk, photo_ids)
  SELECT p_job, ((u.o - 1) / p_chunk_size)::integer, array_agg(u.id ORDER BY u.o)
  FROM unnest(p_photos) WITH ORDINALITY AS u(id, o)
  GROUP BY (u.o - 1) / p_chunk_size;
  UPDATE public.processing_jobs
  SET locked_by = 'apelier:chunks', heartbeat_at = now(), processed_images = p_processed,
      total_images = p_total, current_phase = 'split'
  WHERE id = p_job;
  PERFORM pg_notify('apelier_jobs', p_job::text);
  RETURN 'processing';
END;
$fn$;

-- Claim the next runnable chunk in ONE statement (as claim_job): a queued chunk of a split job that is
-- still processing, the job's priority first, then its age, then the chunk's order; attempts counted
-- here. A worker holds at most one chunk: a worker restarted under the same id while a chunk is still
-- leased to its predecessor claims none until the reaper has put that one back.
CREATE OR REPLACE FUNCTION apelier.claim_chunk(p_worker text, p_job_types text[])
RETURNS TABLE (job jsonb, chunk_no integer, chunk_count integer, chunk_attempts integer, chunk_photos uuid[])
LANGUAGE sql AS $fn$
  WITH next AS (
    SELECT c.job_id, c.chunk
    FROM apelier.job_chunks c
    JOIN public.processing_jobs j ON j.id = c.job_id
    WHERE c.status = 'queued' AND c.run_after <= now()
      AND j.status = 'processing' AND j.locked_by = 'apelier:chunks' AND j.job_type = ANY (p_job_types)
      AND NOT EXISTS (SELECT 1 FROM apelier.job_chunks h WHERE h.locked_by = p_worker)
    ORDER BY j.priority, j.created_at, c.chunk
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED
  ), claimed AS (
    UPDATE apelier.job_chunks AS c
    SET status = 'processing', attempts = c.attempts + 1, locked_by = p_worker, heartbeat_at = now(),
        started_at = coalesce(c.started_at, now()), stage = 'setup', edited = 0
    FROM next
    WHERE c.job_id = next.job_id AND c.chunk = next.chunk
    RETURNING c.job_id, c.chunk, c.attempts, c.photo_ids
  )
  SELECT to_jsonb(j), claimed.chunk,
         (SELECT count(*)::integer FROM apelier.job_chunks a WHERE a.job_id = claimed.job_id),
         claimed.attempts, claimed.photo_ids
  FROM claimed JOIN public.processing_jobs j ON j.id = claimed.job_id;
$fn$;

-- A chunk's photos are all done: it is done, and the last one out (every chunk's end takes the job
-- row's lock, one at a time) gets the job's lease for its worker, to finalise the gallery: 'finalise'.
-- Otherwise 'done', or the job's state for p_worker when it is no longer processing for it.
CREATE OR REPLACE FUNCTION apelier.end_chunk(p_job uuid, p_worker text)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_state text;
BEGIN
  PERFORM 1 FROM public.processing_jobs WHERE id = p_job FOR NO KEY UPDATE;
  v_state := apelier.job_state(p_job, p_worker);
  IF v_state <> 'processing' THEN
    RETURN v_state;
  END IF;
  UPDATE apelier.job_chunks SET status = 'done', locked_by = NULL, heartbeat_at = NULL, ended_at = now()
  WHERE job_id = p_job AND locked_by = p_worker AND status = 'processing';
  IF NOT FOUND THEN
    RETURN 'lost';
  END IF;
  IF EXISTS (SELECT 1 FROM apelier.job_chunks WHERE job_id = p_job AND status <> 'done') THEN
    RETURN 'done';
  END IF;
  UPDATE public.processing_jobs SET locked_by = p_worker, heartbeat_at = now(), current_phase = 'finishing'
  WHERE id = p_job;
  RETURN 'finalise';
END;
$fn$;

-- A run failed (as migration 7's end_attempt), for a job or a chunk. A chunk's attempt is counted by
-- the same rules against the job's max_attempts; the chunk goes back to the queue after p_retry_in_s,
-- or, not retryable or out of attempts, the job fails.
CREATE OR REPLACE FUNCTION apelier.end_attempt(
  p_job uuid, p_worker text, p_error text, p_retry_in_s double precision, p_outside boolean)
RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
  v_attempts integer;
  v_max integer;
  v_locked_by text;
  v_chunk integer;
  v_edited integer;
  v_streak integer;
  v_counted boolean;
  v_failed boolean;
BEGIN
  SELECT attempts, max_attempts, locked_by INTO v_attempts, v_max, v_locked_by
  FROM public.processing_jobs
  WHERE id = p_job AND status = 'processing' AND locked_by IN (p_worker, 'apelier:chunks') FOR UPDATE;
  IF NOT FOUND THEN
    RETURN apelier.job_state(p_job, p_worker);
  END IF;
  IF v_locked_by = 'apelier:chunks' THEN
    SELECT c.chunk, c.attempts, c.edited, c.free_streak INTO v_chunk, v_attempts, v_edited, v_streak
    FROM apelier.job_chunks c WHERE c.job_id = p_job AND c.locked_by = p_worker AND c.status = 'processing'
    FOR UPDATE;
    IF NOT FOUND THEN
      RETURN apelier.job_state(p_job, p_worker);
    END IF;
  ELSE
    SELECT r.edited, r.free_streak INTO v_edited, v_streak
    FROM apelier.job_runs r WHERE r.job_id = p_job AND r.worker = p_worker;
  END IF;
  v_counted := coalesce(v_edited, 0) = 0 AND (NOT p_outside OR coalesce(v_streak, 0) >= 10);
  v_failed := p_retry_in_s IS NULL OR (v_counted AND v_attempts >= v_max);

  -- The photos it was processing did not stop it: not in flight any more.
  DELETE FROM apelier.photos_in_flight f WHERE f.job_id = p_job AND f.worker = p_worker AND f.deaths = 0;
  UPDATE apelier.photos_in_flight f SET worker = NULL WHERE f.job_id = p_job AND f.worker = p_worker;

  IF v_chunk IS NOT NULL AND NOT v_failed THEN
    UPDATE apelier.job_chunks c
    SET status = 'queued',
        attempts = CASE WHEN v_counted THEN c.attempts ELSE greatest(c.attempts - 1, 0) END,
        free_streak = CASE WHEN coalesce(v_edited, 0) > 0 THEN 0
                           WHEN v_counted THEN c.free_streak ELSE c.free_streak + 1 END,
        run_after = now() + make_interval(secs => p_retry_in_s),
        locked_by = NULL, heartbeat_at = NULL, stage = 'setup', edited = 0
    WHERE c.job_id = p_job AND c.chunk = v_chunk;
    PERFORM pg_notify('apelier_jobs', p_job::text);
    RETURN 'queued';
  END IF;
  IF v_chunk IS NULL THEN
    UPDATE apelier.job_runs r
    SET free_streak = CASE WHEN coalesce(v_edited, 0) > 0 THEN 0
                           WHEN v_counted THEN r.free_streak ELSE r.free_streak + 1 END
    WHERE r.job_id = p_job;
  END IF;

  UPDATE public.processing_jobs
  SET status = CASE WHEN v_failed THEN 'failed' ELSE 'queued' END,
      attempts = CASE WHEN v_counted OR v_chunk IS NOT NULL THEN attempts ELSE greatest(attempts - 1, 0) END,
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

-- Graceful shutdown (as migration 3): the job, or the chunk, back to the queue, the attempt not counted.
CREATE OR REPLACE FUNCTION apelier.release_job(p_job uuid, p_worker text)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE public.processing_jobs
  SET status = 'queued', attempts = greatest(attempts - 1, 0), locked_by = NULL, heartbeat_at = NULL,
      run_after = now(), current_phase = 'queued'
  WHERE id = p_job AND locked_by = p_worker AND status = 'processing';
  IF FOUND THEN
    RETURN true;
  END IF;
  PERFORM 1 FROM public.processing_jobs
  WHERE id = p_job AND locked_by = 'apelier:chunks' AND status = 'processing' FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE apelier.job_chunks c
  SET status = 'queued', attempts = greatest(c.attempts - 1, 0), locked_by = NULL, heartbeat_at = NULL,
      run_after = now(), stage = 'setup', edited = 0
  WHERE c.job_id = p_job AND c.locked_by = p_worker AND c.status = 'processing';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM pg_notify('apelier_jobs', p_job::text);
  RETURN true;
END;
$fn$;

-- After a cancel (as migration 6), the job's holder lets go of it; a chunk's holder lets go of its
-- chunk, and the job lets go of 'apelier:chunks' once nobody holds one (its processed_images, which
-- finish_photo kept, stays).
CREATE OR REPLACE FUNCTION apelier.ack_cancel(p_job uuid, p_worker text, p_processed integer, p_progress jsonb)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE public.processing_jobs
  SET locked_by = NULL, heartbeat_at = NULL, processed_images = p_processed, progress = p_progress,
      completed_at = coalesce(completed_at, now()), current_phase = 'canceled'
  WHERE id = p_job AND locked_by = p_worker AND status IN ('canceled', 'failed');
  IF FOUND THEN
    RETURN true;
  END IF;
  PERFORM 1 FROM public.processing_jobs
  WHERE id = p_job AND locked_by = 'apelier:chunks' AND status IN ('canceled', 'failed') FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE apelier.job_chunks c
  SET locked_by = NULL, heartbeat_at = NULL, ended_at = now(),
      status = CASE WHEN c.status = 'done' THEN 'done' ELSE 'canceled' END
  WHERE c.job_id = p_job AND c.locked_by = p_worker;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM apelier.job_chunks c WHERE c.job_id = p_job AND c.locked_by IS NOT NULL) THEN
    UPDATE public.processing_jobs
    SET locked_by = NULL, heartbeat_at = NULL, completed_at = coalesce(completed_at, now()), current_phase = 'canceled'
    WHERE id = p_job;
  END IF;
  RETURN true;
END;
$fn$;

-- As migration 7's job_ended, and: a job that ends failed or canceled ends its chunks too. A cancel
-- leaves each running chunk to its worker, which reads 'canceled' and lets go (ack_cancel); with no
-- chunk held, the job lets go of 'apelier:chunks' at once. A failure takes every chunk from its worker
-- (who reads 'lost').
CREATE OR REPLACE FUNCTION apelier.job_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_reason text;
  v_ids jsonb := '[]'::jsonb;
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
  IF NEW.status IN ('failed', 'canceled') THEN
    IF v_canceled THEN
      UPDATE apelier.job_chunks c SET status = 'canceled', ended_at = now()
      WHERE c.job_id = NEW.id AND c.status IN ('queued', 'processing');
      IF NEW.locked_by = 'apelier:chunks'
         AND NOT EXISTS (SELECT 1 FROM apelier.job_chunks c WHERE c.job_id = NEW.id AND c.locked_by IS NOT NULL) THEN
        UPDATE public.processing_jobs
        SET locked_by = NULL, heartbeat_at = NULL, completed_at = coalesce(completed_at, now()),
            current_phase = 'canceled'
        WHERE id = NEW.id;
      END IF;
    ELSE
      UPDATE apelier.job_chunks c SET status = 'canceled', locked_by = NULL, heartbeat_at = NULL, ended_at = now()
      WHERE c.job_id = NEW.id AND c.status IN ('queued', 'processing');
    END IF;
  END IF;
  DELETE FROM apelier.photos_in_flight f WHERE f.job_id = NEW.id AND f.isolated_at IS NULL;
  DELETE FROM apelier.job_runs r WHERE r.job_id = NEW.id;
  RETURN NULL;
END;
$fn$;

-- The photos a dead worker had in flight on a job (or on one chunk of it): each one's deaths counted, and
-- one that has now stopped a worker more than max_attempts times alone is set aside for review with its
-- reason. Returns whether any photo has died more than twice (a repeat offender: the attempt counts) and
-- how many were set aside. Used by requeue_stale for jobs and for chunks alike.
CREATE OR REPLACE FUNCTION apelier.photos_died(p_job uuid, p_worker text, p_max_attempts integer)
RETURNS TABLE (died_again boolean, isolated integer)
LANGUAGE sql AS $fn$
  WITH died AS (
    UPDATE apelier.photos_in_flight f
    SET deaths = f.deaths + 1, worker = NULL,
        isolated_at = CASE WHEN f.deaths + 1 > p_max_attempts THEN now() END
    WHERE f.job_id = p_job AND f.worker = p_worker
    RETURNING f.photo_id, f.deaths, f.isolated_at
  ), flagged AS (
    UPDATE public.photos ph
    SET needs_review = true,
        ai_edits = coalesce(ph.ai_edits, '{}'::jsonb) || jsonb_build_object('error', jsonb_build_object(
          'phase', 'processing', 'job_id', p_job::text, 'kind', 'WorkerCrash',
          'reason', format('processing this photo stopped the worker %s times (out of memory?), so it was '
                           'skipped; export it with fewer megapixels and upload it again', died.deaths))),
        updated_at = now()
    FROM died
    WHERE ph.id = died.photo_id AND died.isolated_at IS NOT NULL
    RETURNING ph.id
  )
  SELECT coalesce(bool_or(died.deaths > 2), false), (SELECT count(*)::integer FROM flagged)
  FROM died;
$fn$;

-- Any worker may run this (as migration 7), now for chunks too. Jobs: as before, except split ones
-- (their chunks have the leases). Chunks whose worker stopped heartbeating for p_lease_s: the same
-- rules as a job's run (deaths of its photos in flight, the attempt counted only for the chunk's own
-- failures, against the job's max_attempts); back to the queue, or the job fails when a counted attempt
-- was the chunk's last. A chunk of a canceled job whose worker died is let go of (and the job, once no
-- chunk is held). One row per job or chunk requeued: (job_id, new status, previous worker).
CREATE OR REPLACE FUNCTION apelier.requeue_stale(p_lease_s double precision)
RETURNS TABLE (job_id uuid, new_status text, previous_worker text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  j record;
  s record;
  c record;
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
      AND p.locked_by IS DISTINCT FROM 'apelier:chunks'
    FOR UPDATE SKIP LOCKED
  LOOP
    v_stage := NULL;
    v_edited := 0;
    v_streak := 0;
    SELECT r.stage, r.edited, r.free_streak INTO v_stage, v_edited, v_streak
    FROM apelier.job_runs r WHERE r.job_id = j.id AND r.worker = j.locked_by;

    SELECT d.died_again, d.isolated INTO v_repeat, v_isolated
    FROM apelier.photos_died(j.id, j.locked_by, j.max_attempts) d;

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

  FOR s IN
    SELECT k.job_id, k.chunk, k.locked_by
    FROM apelier.job_chunks k
    WHERE k.locked_by IS NOT NULL AND k.heartbeat_at < now() - make_interval(secs => p_lease_s)
    ORDER BY k.job_id, k.chunk
  LOOP
    -- The job row first, as every chunk function; then the chunk, if still stale (another worker's
    -- reaper may have been first).
    SELECT p.id, p.status, p.locked_by, p.max_attempts INTO j
    FROM public.processing_jobs p WHERE p.id = s.job_id FOR NO KEY UPDATE;
    SELECT k.chunk, k.locked_by, k.attempts, k.stage, k.edited, k.free_streak INTO c
    FROM apelier.job_chunks k
    WHERE k.job_id = s.job_id AND k.chunk = s.chunk AND k.locked_by = s.locked_by
      AND k.heartbeat_at < now() - make_interval(secs => p_lease_s)
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
      CONTINUE;
    END IF;
    job_id := s.job_id;
    previous_worker := c.locked_by;

    IF j.status IS DISTINCT FROM 'processing' OR j.locked_by IS DISTINCT FROM 'apelier:chunks' THEN
      -- The job ended (a cancel) while a dead worker held this chunk: let go of it.
      UPDATE apelier.job_chunks k
      SET locked_by = NULL, heartbeat_at = NULL, ended_at = now(),
          status = CASE WHEN k.status = 'done' THEN 'done' ELSE 'canceled' END
      WHERE k.job_id = s.job_id AND k.chunk = s.chunk;
      IF j.locked_by = 'apelier:chunks'
         AND NOT EXISTS (SELECT 1 FROM apelier.job_chunks k WHERE k.job_id = s.job_id AND k.locked_by IS NOT NULL) THEN
        UPDATE public.processing_jobs p
        SET locked_by = NULL, heartbeat_at = NULL, completed_at = coalesce(p.completed_at, now()),
            current_phase = 'canceled'
        WHERE p.id = s.job_id;
      END IF;
      new_status := 'canceled';
      RETURN NEXT;
      CONTINUE;
    END IF;

    SELECT d.died_again, d.isolated INTO v_repeat, v_isolated
    FROM apelier.photos_died(s.job_id, c.locked_by, j.max_attempts) d;

    v_progress := c.edited > 0 OR v_isolated > 0;
    v_counted := NOT v_progress AND (c.stage = 'setup' OR v_repeat OR c.free_streak >= 10);
    v_failed := v_counted AND c.attempts >= j.max_attempts;

    IF v_failed THEN
      UPDATE public.processing_jobs p
      SET status = 'failed', current_phase = 'failed',
          error_log = format('the worker running part %s of this job stopped responding (attempt %s of %s); '
                             'check the worker logs', c.chunk + 1, c.attempts, j.max_attempts),
          completed_at = now(), run_after = now(), locked_by = NULL, heartbeat_at = NULL
      WHERE p.id = s.job_id;
      new_status := 'failed';
    ELSE
      UPDATE apelier.job_chunks k
      SET status = 'queued',
          attempts = CASE WHEN v_counted THEN k.attempts ELSE greatest(k.attempts - 1, 0) END,
          free_streak = CASE WHEN v_progress THEN 0 WHEN v_counted THEN k.free_streak ELSE k.free_streak + 1 END,
          run_after = now(), locked_by = NULL, heartbeat_at = NULL, stage = 'setup', edited = 0
      WHERE k.job_id = s.job_id AND k.chunk = s.chunk;
      PERFORM pg_notify('apelier_jobs', s.job_id::text);
      new_status := 'queued';
    END IF;
    RETURN NEXT;
  END LOOP;
END;
$fn$;

-- The worker's functions are for the worker's role only, never for the app's API roles.
REVOKE ALL ON FUNCTION apelier.chunk_counts(uuid), apelier.photos_died(uuid, text, integer),
  apelier.split_job(uuid, text, uuid[], integer, integer, integer),
  apelier.claim_chunk(text, text[]), apelier.end_chunk(uuid, text)
FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON apelier.job_chunks TO apelier_worker;
GRANT EXECUTE ON FUNCTION
    apelier.chunk_counts(uuid),
    apelier.photos_died(uuid, text, integer),
    apelier.split_job(uuid, text, uuid[], integer, integer, integer),
    apelier.claim_chunk(text, text[]),
    apelier.end_chunk(uuid, text)
  TO apelier_worker;
