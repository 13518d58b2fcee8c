-- Migration 1: the app's tables, for a fresh database (the demo, tests, a self-hosted setup).
--
-- Migrations 1-4 are the schema as workers before versioned migrations left it (their "schema
-- version 3"), written to be idempotent: on a database those workers migrated they run again and
-- change nothing. Never edit an applied migration; add the next number (see docs/architecture.md).
--
-- Column-compatible with the Apelier app's tables (apps/web/lib/types.ts and
-- supabase/migrations/ in mitchpearce94-afk/apelier). On the app's own
-- database every table already exists and each CREATE ... IF NOT EXISTS below
-- is a no-op; 0002_queue.sql then adds what the queue needs.
--
-- Plain PostgreSQL has no auth.users: auth_user_id carries no foreign key here.

CREATE TABLE IF NOT EXISTS public.photographers (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    auth_user_id          uuid,
    email                 text,
    name                  text,
    business_name         text,
    brand_settings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    subscription_tier     text NOT NULL DEFAULT 'free',
    timezone              text NOT NULL DEFAULT 'UTC',
    images_edited_count   integer DEFAULT 0,
    billing_period_start  timestamptz DEFAULT date_trunc('month', now()),
    billing_period_end    timestamptz DEFAULT (date_trunc('month', now()) + interval '1 month'),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.galleries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    photographer_id  uuid NOT NULL REFERENCES public.photographers (id) ON DELETE CASCADE,
    job_id           uuid,
    client_id        uuid,
    title            text NOT NULL DEFAULT 'Untitled gallery',
    description      text,
    slug             text,
    access_type      text NOT NULL DEFAULT 'password',
    status           text NOT NULL DEFAULT 'processing',
    view_count       integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.photos (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    gallery_id       uuid NOT NULL REFERENCES public.galleries (id) ON DELETE CASCADE,
    photographer_id  uuid NOT NULL REFERENCES public.photographers (id) ON DELETE CASCADE,
    original_key     text NOT NULL,
    edited_key       text,
    web_key          text,
    thumb_key        text,
    watermarked_key  text,
    filename         text NOT NULL,
    file_size        bigint,
    mime_type        text,
    width            integer,
    height           integer,
    exif_data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    scene_type       text,
    quality_score    integer CHECK (quality_score BETWEEN 0 AND 100),
    face_data        jsonb NOT NULL DEFAULT '[]'::jsonb,
    ai_edits         jsonb NOT NULL DEFAULT '{}'::jsonb,
    manual_edits     jsonb NOT NULL DEFAULT '{}'::jsonb,
    prompt_edits     jsonb NOT NULL DEFAULT '[]'::jsonb,
    status           text NOT NULL DEFAULT 'uploaded'
                     CHECK (status IN ('uploaded', 'processing', 'edited', 'approved', 'delivered', 'rejected')),
    star_rating      integer NOT NULL DEFAULT 0,
    color_label      text,
    is_culled        boolean NOT NULL DEFAULT false,
    is_favorite      boolean NOT NULL DEFAULT false,
    is_sneak_peek    boolean NOT NULL DEFAULT false,
    sort_order       integer NOT NULL DEFAULT 0,
    section          text,
    edit_confidence  double precision,
    needs_review     boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS photos_gallery_id_idx ON public.photos (gallery_id);

CREATE TABLE IF NOT EXISTS public.style_profiles (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    photographer_id        uuid NOT NULL REFERENCES public.photographers (id) ON DELETE CASCADE,
    name                   text NOT NULL DEFAULT 'My style',
    description            text,
    reference_image_keys   text[] NOT NULL DEFAULT '{}',
    model_weights_key      text,
    settings               jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                 text NOT NULL DEFAULT 'pending',
    training_started_at    timestamptz,
    training_completed_at  timestamptz,
    model_key              text,
    model_filename         text,
    training_method        text DEFAULT 'reference',
    training_status        text DEFAULT 'pending',
    training_error         text,
    training_time_s        double precision,
    pairs_used             integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- The app writes 'delivered' here too (its mark_delivered action), so it is allowed.
CREATE TABLE IF NOT EXISTS public.processing_jobs (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    gallery_id         uuid REFERENCES public.galleries (id) ON DELETE CASCADE,
    photographer_id    uuid NOT NULL REFERENCES public.photographers (id) ON DELETE CASCADE,
    style_profile_id   uuid REFERENCES public.style_profiles (id) ON DELETE SET NULL,
    total_images       integer NOT NULL DEFAULT 0,
    processed_images   integer NOT NULL DEFAULT 0,
    current_phase      text,
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'canceled', 'delivered')),
    started_at         timestamptz,
    completed_at       timestamptz,
    error_log          text,
    settings_override  jsonb,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The app's billing counter (supabase/migrations/20260219000002_images_edited_counter.sql), same
-- signature and behaviour. Created only where it is missing: the app's own copy is never replaced.
DO $do$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proname = 'increment_images_edited'
  ) THEN
    CREATE FUNCTION public.increment_images_edited(photographer_uuid uuid, count integer DEFAULT 1)
    RETURNS void
    LANGUAGE plpgsql
    AS $fn$
    BEGIN
      UPDATE public.photographers
      SET images_edited_count = CASE WHEN billing_period_end <= now() THEN count
                                     ELSE coalesce(images_edited_count, 0) + count END,
          billing_period_start = CASE WHEN billing_period_end <= now() THEN date_trunc('month', now())
                                      ELSE billing_period_start END,
          billing_period_end = CASE WHEN billing_period_end <= now()
                                    THEN date_trunc('month', now()) + interval '1 month'
                                    ELSE billing_period_end END
      WHERE id = photographer_uuid;
    END;
    $fn$;
  END IF;
END
$do$;
