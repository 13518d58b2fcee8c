-- Migration 10: the app's own cancel counts as a cancel.
--
-- The app cancels a job by writing status = 'failed' (error_log 'Cancelled by user'), and its queue
-- view fails jobs it thinks stalled the same way ('Processing stalled — automatically cancelled'); it
-- never clears locked_by. The worker's own ends of a job (fail_job, requeue_stale) clear locked_by in
-- the same statement, so a job that is 'failed' while still leased to a worker was ended by someone
-- else: that is a cancel, and the worker treats it as one. What changes:
--   * job_state answers 'canceled' for it (heartbeat, update_progress, fail_photo and every other
--     write that answers the job's state go through job_state);
--   * finish_photo records a photo only while the job is 'processing': after a cancel of either
--     form nothing more is marked edited or billed (the worker deletes the outputs it uploaded for
--     the photos it could not record);
--   * ack_cancel lets go of it too, keeping the status, error_log and completed_at the app wrote;
--   * a train_style job the app fails that way (running, or waiting for a retry) ends its profile's
--     training as a cancel does: back to 'ready' with the model it had.
-- The signatures are unchanged: a worker that predates this migration keeps running.

CREATE OR REPLACE FUNCTION apelier.job_state(p_job uuid, p_worker text)
RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(
    (SELECT CASE WHEN locked_by IS DISTINCT FROM p_worker THEN 'lost'
                 WHEN status = 'failed' THEN 'canceled'  -- failed by the app while leased: its cancel
                 ELSE status END
     FROM public.processing_jobs WHERE id = p_job),
    'deleted');
$fn$;

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

-- After a cancel (ours: 'canceled'; the app's: 'failed' while leased), the worker that held the job
-- lets go of it. The status, error_log and completed_at stay as the canceler wrote them.
CREATE OR REPLACE FUNCTION apelier.ack_cancel(p_job uuid, p_worker text, p_processed integer, p_progress jsonb)
RETURNS boolean
LANGUAGE sql AS $fn$
  WITH upd AS (
    UPDATE public.processing_jobs
    SET locked_by = NULL, heartbeat_at = NULL, processed_images = p_processed, progress = p_progress,
        completed_at = coalesce(completed_at, now()), current_phase = 'canceled'
    WHERE id = p_job AND locked_by = p_worker AND status IN ('canceled', 'failed')
    RETURNING id
  )
  SELECT EXISTS (SELECT 1 FROM upd);
$fn$;

-- As in migration 2, with the app's cancel counted as a cancel: 'failed' written while a worker still
-- holds the job (the worker's own failures clear locked_by in the same statement), or written on a
-- job waiting in the queue (the worker never fails a queued job).
CREATE OR REPLACE FUNCTION apelier.fail_style_training() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  canceled boolean := NEW.status = 'canceled'
                      OR (NEW.status = 'failed' AND (NEW.locked_by IS NOT NULL OR OLD.status = 'queued'));
  keep boolean := false;
BEGIN
  IF canceled THEN
    -- A model galleries apply: ours (model_key) or the app's legacy one (worker/style/cache.py).
    SELECT p.model_key IS NOT NULL OR p.model_weights_key IS NOT NULL INTO keep FROM public.style_profiles p
    WHERE p.id = NEW.style_profile_id AND p.photographer_id = NEW.photographer_id;
  END IF;
  UPDATE public.style_profiles
  SET training_status = CASE WHEN coalesce(keep, false) THEN 'ready' ELSE 'error' END,
      status = CASE WHEN coalesce(keep, false) THEN 'ready' ELSE 'error' END,
      training_error = CASE
        WHEN NOT canceled THEN coalesce(NEW.error_log, 'training failed; see the worker logs')
        WHEN coalesce(keep, false) THEN NULL
        ELSE 'training canceled' END,
      training_completed_at = CASE WHEN coalesce(keep, false) THEN training_completed_at ELSE now() END,
      updated_at = now()
  WHERE id = NEW.style_profile_id AND photographer_id = NEW.photographer_id AND training_status = 'training';
  RETURN NULL;
END;
$fn$;

