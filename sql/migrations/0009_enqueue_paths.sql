-- Migration 9: the ways a job is queued agree.
--
--   A. public.apelier_enqueue_style_training takes a Lightroom preset (preset_file_key), as the
--      worker's train_style job and the HTTP API do. The old four-argument signature is dropped in
--      the same transaction, so PostgREST never sees two overloads; the app's calls by name are
--      unchanged.
--   B. One rule and one SQL path for queueing a gallery (apelier.enqueue_gallery): the app's rpc
--      and the HTTP API (worker/api) both call it. A gallery job of the gallery that is still queued
--      with the same style profile, settings_override and payload is the same request and is
--      returned; a queued job with anything different is a different request, and a new job is
--      queued beside it. Two calls at once queue one job (a transaction-scoped advisory lock).
--   C. One clean-up of outputs uploaded for photos that were never recorded: migration 7's
--      apelier.pending_outputs. A pending output now names the worker uploading it, so that the worker
--      whose run ends canceled (or finds its job row deleted) deletes its own at once
--      (apelier.own_unrecorded_outputs), with nothing of another chunk's worker, still uploading,
--      touched; whatever is left (a worker that died, a delete that failed) the periodic sweep removes
--      a lease after the job ended. Rows have no foreign key: they outlive the app deleting the job.
--
-- It only adds (a column, functions) and replaces bodies with their signatures kept: workers of the
-- previous release never call the new functions, and their pending outputs (worker NULL, the column
-- they do not write) are the periodic sweep's.

-- == A. Style training with a Lightroom preset ====================================================

DROP FUNCTION IF EXISTS public.apelier_enqueue_style_training(uuid, jsonb, text[], integer);

-- pairs: [{"original_key", "edited_key"}, ...] for the 3D LUT: 5 to 200, or 3 to 200 with a preset,
-- which they then refine (worker/jobs/style.py). preset_file_key alone: the preset is the style.
-- Neither: the histogram method from reference_keys (default: the profile's); a preset cannot go with
-- reference_keys (the histogram method does not use one).
CREATE FUNCTION public.apelier_enqueue_style_training(
  style_profile_id uuid, pairs jsonb DEFAULT NULL, reference_keys text[] DEFAULT NULL, epochs integer DEFAULT NULL,
  preset_file_key text DEFAULT NULL)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  v_photographer uuid;
  v_profile_refs text[];
  v_keys text[];
  v_least integer;
  v_payload jsonb;
  job public.processing_jobs;
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT s.photographer_id, s.reference_image_keys INTO v_photographer, v_profile_refs
  FROM public.style_profiles s WHERE s.id = apelier_enqueue_style_training.style_profile_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'style profile % not found', apelier_enqueue_style_training.style_profile_id
      USING ERRCODE = 'PT404';
  END IF;
  IF preset_file_key IS NOT NULL AND reference_keys IS NOT NULL THEN
    RAISE EXCEPTION 'give preset_file_key with pairs or alone, not with reference_keys (the histogram method uses no preset)'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF epochs IS NOT NULL AND pairs IS NULL THEN
    RAISE EXCEPTION 'epochs applies to pairs (3D LUT) only' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  IF pairs IS NOT NULL THEN
    IF reference_keys IS NOT NULL THEN
      RAISE EXCEPTION 'give pairs (3D LUT) or reference_keys (histogram), not both'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_least := CASE WHEN preset_file_key IS NULL THEN 5 ELSE 3 END;
    IF jsonb_typeof(pairs) <> 'array' OR jsonb_array_length(pairs) NOT BETWEEN v_least AND 200 THEN
      RAISE EXCEPTION 'pairs must be a list of % to 200 {original_key, edited_key}%', v_least,
        CASE WHEN preset_file_key IS NULL THEN ' (3 with a preset_file_key)' ELSE '' END
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(pairs) AS e
               WHERE jsonb_typeof(e) <> 'object'
                  OR jsonb_typeof(e -> 'original_key') IS DISTINCT FROM 'string'
                  OR jsonb_typeof(e -> 'edited_key') IS DISTINCT FROM 'string') THEN
      RAISE EXCEPTION 'every pair needs original_key and edited_key (strings)'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(k) INTO v_keys
    FROM jsonb_array_elements(pairs) AS e, LATERAL (VALUES (e ->> 'original_key'), (e ->> 'edited_key')) AS v (k);
    IF epochs IS NOT NULL AND epochs NOT BETWEEN 1 AND 1000 THEN
      RAISE EXCEPTION 'epochs must be 1 to 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_payload := jsonb_build_object(
      'pairs', (SELECT jsonb_agg(jsonb_build_object('original_key', e -> 'original_key',
                                                    'edited_key', e -> 'edited_key'))
                FROM jsonb_array_elements(pairs) AS e));
    IF epochs IS NOT NULL THEN
      v_payload := v_payload || jsonb_build_object('epochs', epochs);
    END IF;
  ELSIF preset_file_key IS NOT NULL THEN
    v_keys := ARRAY[]::text[];
    v_payload := '{}'::jsonb;
  ELSE
    v_keys := coalesce(reference_keys, v_profile_refs);
    IF coalesce(cardinality(v_keys), 0) = 0 THEN
      RAISE EXCEPTION 'give pairs, a preset_file_key, or reference_keys (the profile has no reference_image_keys)'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_payload := jsonb_build_object('training_method', 'histogram');
    IF reference_keys IS NOT NULL THEN
      v_payload := v_payload || jsonb_build_object('reference_keys', to_jsonb(reference_keys));
    END IF;
  END IF;
  IF preset_file_key IS NOT NULL THEN
    v_keys := v_keys || preset_file_key;
    v_payload := v_payload || jsonb_build_object('preset_file_key', preset_file_key);
  END IF;
  -- Every key in the photographer's own folder, as the worker requires (it checks again).
  IF EXISTS (SELECT 1 FROM unnest(v_keys) AS k
             WHERE split_part(k, '/', 1) <> v_photographer::text OR position('/' IN k) = 0
                OR string_to_array(k, '/') && ARRAY['', '.', '..']) THEN
    RAISE EXCEPTION 'every key must lie in the photographer''s folder (%/...)', v_photographer
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                      status, job_type, payload)
  VALUES (NULL, v_photographer, apelier_enqueue_style_training.style_profile_id, 0, 'queued', 'train_style',
          v_payload)
  RETURNING * INTO job;
  RETURN job;
END;
$fn$;

-- Who may call it: as migration 5's signature, signed-in users and the service role, not anon.
REVOKE ALL ON FUNCTION public.apelier_enqueue_style_training(uuid, jsonb, text[], integer, text) FROM PUBLIC;
DO $do$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('%s ALL ON FUNCTION public.apelier_enqueue_style_training(uuid, jsonb, text[], integer, text) %s %I',
                     CASE r WHEN 'anon' THEN 'REVOKE' ELSE 'GRANT' END,
                     CASE r WHEN 'anon' THEN 'FROM' ELSE 'TO' END, r);
    END IF;
  END LOOP;
END
$do$;

-- == B. One way to queue a gallery =================================================================

-- Queue gallery p_gallery, or return the gallery job of it that is still queued with the same style
-- profile, settings_override and payload (the same request: when it is claimed it takes every photo
-- not yet edited, new uploads too). A queued job with a different style, settings or payload is a
-- different request: a new job is queued beside it. SECURITY INVOKER: called by the app's rpc it runs
-- as the signed-in photographer, so row-level security and migration 5's guard decide what the caller
-- may see and insert; called by the HTTP API (the owner's or the service role's connection) after the
-- API's own checks. The advisory lock, held to the end of the caller's transaction, makes two calls
-- at once queue one job. reused: the job was already queued.
CREATE OR REPLACE FUNCTION apelier.enqueue_gallery(
  p_gallery uuid, p_style uuid, p_settings jsonb, p_payload jsonb,
  OUT job public.processing_jobs, OUT reused boolean)
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
DECLARE
  v_photographer uuid;
  v_total integer;
BEGIN
  SELECT g.photographer_id INTO v_photographer FROM public.galleries g WHERE g.id = p_gallery;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'gallery % not found', p_gallery USING ERRCODE = 'PT404';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('apelier enqueue gallery ' || p_gallery::text));
  SELECT * INTO job FROM public.processing_jobs j
  WHERE j.gallery_id = p_gallery AND j.job_type = 'gallery' AND j.status = 'queued'
    AND j.style_profile_id IS NOT DISTINCT FROM p_style
    AND j.settings_override IS NOT DISTINCT FROM p_settings
    AND j.payload = coalesce(p_payload, '{}'::jsonb)
  ORDER BY j.created_at LIMIT 1;
  IF FOUND THEN
    reused := true;
    RETURN;
  END IF;
  SELECT count(*) INTO v_total FROM public.photos p WHERE p.gallery_id = p_gallery AND NOT p.is_culled;
  INSERT INTO public.processing_jobs (gallery_id, photographer_id, style_profile_id, total_images,
                                      status, job_type, payload, settings_override)
  VALUES (p_gallery, v_photographer, p_style, v_total, 'queued', 'gallery', coalesce(p_payload, '{}'::jsonb),
          p_settings)
  RETURNING * INTO job;
  reused := false;
END;
$fn$;

-- The app's rpc (migration 5's signature, its grants kept): the same path.
CREATE OR REPLACE FUNCTION public.apelier_enqueue_gallery(
  gallery_id uuid, style_profile_id uuid DEFAULT NULL, settings_override jsonb DEFAULT NULL)
RETURNS public.processing_jobs
LANGUAGE plpgsql SECURITY INVOKER SET search_path = '' AS $fn$
BEGIN
  IF auth.uid() IS NULL THEN
    RAISE EXCEPTION 'sign in to queue or cancel jobs' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN (apelier.enqueue_gallery(apelier_enqueue_gallery.gallery_id, apelier_enqueue_gallery.style_profile_id,
                                  apelier_enqueue_gallery.settings_override, NULL)).job;
END;
$fn$;

-- Who may call it: the roles whose rpc calls it, through schema apelier, which Supabase's API does not
-- expose (every other function in it stays revoked from PUBLIC: this is the only one they may run).
REVOKE ALL ON FUNCTION apelier.enqueue_gallery(uuid, uuid, jsonb, jsonb) FROM PUBLIC;
DO $do$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['authenticated', 'service_role'] LOOP
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('GRANT USAGE ON SCHEMA apelier TO %I', r);
      EXECUTE format('GRANT EXECUTE ON FUNCTION apelier.enqueue_gallery(uuid, uuid, jsonb, jsonb) TO %I', r);
    END IF;
  END LOOP;
END
$do$;

-- == C. Outputs never recorded: one clean-up ======================================================

ALTER TABLE apelier.pending_outputs ADD COLUMN IF NOT EXISTS worker text;  -- uploading them; NULL: older release

-- As migration 7's, and the pending outputs name the worker that uploads them.
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
  INSERT INTO apelier.pending_outputs AS o (job_id, photo_id, key, worker)
  SELECT p_job, p_photo, k, p_worker FROM unnest(p_keys) AS k
  ON CONFLICT (job_id, key) DO UPDATE SET photo_id = excluded.photo_id, worker = excluded.worker, written_at = now();
  RETURN v_state;
END;
$fn$;

-- The outputs p_worker uploaded for photos of p_job it never recorded, once the job is canceled for it
-- or its row is gone: the worker calls this as its run ends (its uploads are over), without waiting a
-- lease as the periodic sweep (unrecorded_outputs) does. Nothing while the job is processing for it or
-- has passed to another worker ('lost': the new owner uploads under the same keys and owns the rows).
-- referenced and photographer_id as unrecorded_outputs'.
CREATE OR REPLACE FUNCTION apelier.own_unrecorded_outputs(p_job uuid, p_worker text)
RETURNS TABLE (job_id uuid, key text, photographer_id uuid, referenced boolean)
LANGUAGE sql STABLE AS $fn$
  SELECT o.job_id, o.key, coalesce(ph.photographer_id, j.photographer_id),
         coalesce(o.key IN (ph.edited_key, ph.web_key, ph.thumb_key, ph.watermarked_key), false)
  FROM apelier.pending_outputs o
  LEFT JOIN public.processing_jobs j ON j.id = o.job_id
  LEFT JOIN public.photos ph ON ph.id = o.photo_id
  WHERE o.job_id = p_job AND o.worker = p_worker
    AND apelier.job_state(p_job, p_worker) IN ('canceled', 'deleted')
  ORDER BY o.written_at;
$fn$;

REVOKE ALL ON FUNCTION apelier.own_unrecorded_outputs(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apelier.own_unrecorded_outputs(uuid, text) TO apelier_worker;
