-- Migration 9: the ways a job is queued agree.
--
--   A. public.apelier_enqueue_style_training takes a Lightroom preset (preset_file_key), as the
--      worker's train_style job and the HTTP API do. The old four-argument signature is dropped in
--      the same transaction, so PostgREST never sees two overloads; the app's calls by name are
--      unchanged.
--
-- It only adds and replaces what the app calls; workers of the previous release never call these.

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
