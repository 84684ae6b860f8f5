-- creditgate seed: a working catalog for local development and `creditgate up`.
--
-- Runs after the migrations (as creditgate_deployer locally, as postgres on Supabase with
-- `supabase db reset`), in one transaction. Idempotent: re-running converges prices,
-- limits, routes and packs to what is written here, but keeps an operator's on/off
-- switches (models.enabled, loras.enabled, credit_packs.active). Default rate-limit rules
-- come from migration 0004; settings keep their defaults (creditgate_private.setting_defaults).
--
-- Every model is routed to the embedded local runner (`creditgate runner`, AUTOMATIC1111
-- + OpenAI-compatible API on 127.0.0.1:7860); point a route at a real A1111/Forge, Ollama,
-- vLLM or a hosted provider by updating creditgate_private.model_routes.
--
-- Prices, in credits (price = base + per_megapixel*MP + per_step*steps
--   + per_second*seconds + per_1k_tokens*tokens/1000 + LoRAs, rounded up; MP = w*h/1e6):
--   sdxl         1024x1024, 30 steps  100 + 200*1.048576 + 6.5*30        =  505
--   sd15          512x512,  25 steps   40 + 150*0.262144 + 3*25          =  155
--   sdxl-edit    1024x1024, 30 steps  300 + 400*1.048576 + 9*30          =  990
--   animatediff   512x512,  3 s       500 + 1000*0.262144 + 500*3        = 2263  (6 s: 3763)
--   local-chat   prompt + max_tokens    2 + 10 per 1k tokens (512 out: ~8); unused output
--                                      tokens are refunded when the worker settles
--   LoRAs add 40-60 each. Packs: 1,000 credits is about a dollar.

insert into creditgate.models (
  id, kind, name, description,
  price_base, price_per_megapixel, price_per_step, price_per_second, price_per_1k_tokens,
  max_width, max_height, max_pixels, max_steps, max_duration_seconds, max_output_tokens,
  max_prompt_length, max_loras, defaults, sort_order
) values
  ('sdxl', 'image', 'SDXL', 'Stable Diffusion XL text-to-image, up to 2 MP.',
   100, 200, 6.5, 0, 0,
   2048, 2048, 2097152, 50, null, null,
   2000, 3, '{"width": 1024, "height": 1024, "steps": 30, "cfg_scale": 7}', 10),
  ('sd15', 'image', 'SD 1.5', 'Stable Diffusion 1.5: fast, cheap drafts up to 1 MP.',
   40, 150, 3, 0, 0,
   1024, 1024, 1048576, 50, null, null,
   2000, 2, '{"width": 512, "height": 512, "steps": 25, "cfg_scale": 7}', 20),
  ('sdxl-edit', 'edit', 'SDXL edit', 'Image-to-image with SDXL: restyle or rework one of your images.',
   300, 400, 9, 0, 0,
   2048, 2048, 2097152, 50, null, null,
   2000, 2, '{"width": 1024, "height": 1024, "steps": 30, "cfg_scale": 7, "strength": 0.75}', 30),
  ('animatediff', 'video', 'AnimateDiff', 'Short animated clips (AnimateDiff on SD 1.5), up to 6 seconds.',
   500, 1000, 0, 500, 0,
   768, 768, 589824, null, 6, null,
   2000, 0, '{"width": 512, "height": 512, "duration_seconds": 3, "fps": 8}', 40),
  ('local-chat', 'chat', 'Local chat', 'Chat completions from the local OpenAI-compatible server.',
   2, 0, 0, 0, 10,
   null, null, null, null, null, 2048,
   8000, 0, '{"max_tokens": 512, "temperature": 0.7}', 50)
on conflict (id) do update set
  kind = excluded.kind,
  name = excluded.name,
  description = excluded.description,
  price_base = excluded.price_base,
  price_per_megapixel = excluded.price_per_megapixel,
  price_per_step = excluded.price_per_step,
  price_per_second = excluded.price_per_second,
  price_per_1k_tokens = excluded.price_per_1k_tokens,
  max_width = excluded.max_width,
  max_height = excluded.max_height,
  max_pixels = excluded.max_pixels,
  max_steps = excluded.max_steps,
  max_duration_seconds = excluded.max_duration_seconds,
  max_output_tokens = excluded.max_output_tokens,
  max_prompt_length = excluded.max_prompt_length,
  max_loras = excluded.max_loras,
  defaults = excluded.defaults,
  sort_order = excluded.sort_order;

-- Server-only: where each model runs. provider_model is the checkpoint (A1111) or model
-- name (chat) the runner knows; options carry timeouts and provider extras.
insert into creditgate_private.model_routes (model_id, provider, provider_model, endpoint, options)
values
  ('sdxl', 'local', 'sdxl-base', 'http://127.0.0.1:7860',
   '{"timeout_seconds": 120, "sampler_name": "DPM++ 2M Karras"}'),
  ('sd15', 'local', 'sd15', 'http://127.0.0.1:7860',
   '{"timeout_seconds": 60, "sampler_name": "Euler a"}'),
  ('sdxl-edit', 'local', 'sdxl-base', 'http://127.0.0.1:7860',
   '{"timeout_seconds": 120, "sampler_name": "DPM++ 2M Karras"}'),
  ('animatediff', 'local', 'sd15', 'http://127.0.0.1:7860',
   '{"timeout_seconds": 300, "animatediff_model": "mm_sd15_v3.safetensors"}'),
  ('local-chat', 'local', 'local-chat', 'http://127.0.0.1:7860',
   '{"timeout_seconds": 60}')
on conflict (model_id) do update set
  provider = excluded.provider,
  provider_model = excluded.provider_model,
  endpoint = excluded.endpoint,
  options = excluded.options;

insert into creditgate.loras (id, name, description, model_ids, price) values
  ('pixel-art', 'Pixel art', 'Crisp pixel-art look.', array['sdxl', 'sdxl-edit'], 50),
  ('watercolor', 'Watercolor', 'Soft washes and paper texture.', array['sdxl', 'sdxl-edit'], 50),
  ('film-grain', 'Film grain', 'Analog film colour and grain.', array['sd15'], 40),
  ('detail-tweaker', 'Detail tweaker', 'More (or, at negative weight, less) fine detail.',
   array['sdxl', 'sd15'], 60)
on conflict (id) do update set
  name = excluded.name,
  description = excluded.description,
  model_ids = excluded.model_ids,
  price = excluded.price;

-- Server-only: the LoRA file as A1111 names it (the file in models/Lora without extension).
insert into creditgate_private.lora_sources (lora_id, source) values
  ('pixel-art', 'pixel-art-xl-v1.1'),
  ('watercolor', 'watercolor-style-sdxl'),
  ('film-grain', 'film-grain-sd15'),
  ('detail-tweaker', 'add-detail-xl')
on conflict (lora_id) do update set source = excluded.source;

-- What each Stripe price buys (credits come from here, never from the client).
insert into creditgate.credit_packs (id, name, credits, price_cents, currency, stripe_price_id, category, priority) values
  ('starter', 'Starter', 5000, 500, 'usd', 'price_starter', 'paid', 50),
  ('creator', 'Creator', 25000, 2000, 'usd', 'price_creator', 'paid', 50),
  ('studio', 'Studio', 100000, 7000, 'usd', 'price_studio', 'paid', 50)
on conflict (id) do update set
  name = excluded.name,
  credits = excluded.credits,
  price_cents = excluded.price_cents,
  currency = excluded.currency,
  stripe_price_id = excluded.stripe_price_id,
  category = excluded.category,
  priority = excluded.priority;
