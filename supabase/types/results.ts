// What each creditgate RPC returns. Hand-written: the functions return `jsonb`, which the
// generated `creditgate.ts` can only type as `Json`. `creditgate types` derives the JSON
// schema of every interface here (results.schema.json, additionalProperties false), and
// tests/devkit validates real results of every RPC against it, so an interface that drifts
// from its function fails the suite. `RpcResults` maps each function name to its result;
// index.ts checks at compile time that it names every function of the generated types.
//
// Numbers: `Int` marks values that are integers in SQL (bigint credits, counts); `Decimal`
// marks numeric values (prices, ratios) that may carry a fraction.

/** @asType integer */
export type Int = number
export type Decimal = number
/** @format uuid */
export type Uuid = string
/** @format date-time */
export type Timestamp = string
/** @format date */
export type DateOnly = string
/** Any JSON value (settings values, provider options, stored outputs). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

export type GenerationKind = "image" | "edit" | "video" | "chat"
export type GenerationStatus = "queued" | "running" | "succeeded" | "failed" | "canceled"
export type LotCategory = "paid" | "promotional"
export type CreditEntryType = "signup_bonus" | "purchase" | "grant" | "admin_recharge"

// --- params, normalized as quote and request_generation store them ---------------------------

export interface LoraRef {
  id: string
  weight: Decimal
}

export interface ImageParams {
  prompt: string
  negative_prompt: string
  width: Int
  height: Int
  seed?: Int
  steps: Int
  cfg_scale: Decimal
  loras: LoraRef[]
}

export interface EditParams extends ImageParams {
  init_media_id: Uuid
  strength: Decimal
}

export interface VideoParams {
  prompt: string
  negative_prompt: string
  width: Int
  height: Int
  seed?: Int
  duration_seconds: Int
  fps: Int
}

export interface ChatMessage {
  role: "system" | "user" | "assistant"
  content: string
}

export interface ChatParams {
  messages: ChatMessage[]
  max_tokens: Int
  temperature: Decimal
}

export type GenerationParams = ImageParams | EditParams | VideoParams | ChatParams

// --- client functions ------------------------------------------------------------------------

export interface LoraPrice {
  id: string
  price: Int
}

export interface PriceBreakdown {
  base: Decimal
  megapixels: Decimal
  megapixel_cost: Decimal
  steps: Int
  step_cost: Decimal
  seconds: Int
  second_cost: Decimal
  prompt_tokens: Int
  output_tokens: Int
  token_cost: Decimal
  loras: LoraPrice[]
  lora_cost: Int
  subtotal: Decimal
  total: Int
}

/** quote(model_id, params) */
export interface QuoteResult {
  model_id: string
  kind: GenerationKind
  cost: Int
  breakdown: PriceBreakdown
  params: GenerationParams
}

/** request_generation(model_id, params, idempotency_key); a retry returns replayed: true */
export interface RequestGenerationResult {
  generation_id: Uuid
  status: "queued"
  cost: Int
  balance: Int
  replayed: boolean
}

/** cancel_generation(generation_id) */
export interface CancelGenerationResult {
  generation_id: Uuid
  status: "canceled"
  refunded: Int
  balance: Int
}

export interface ExpiringLot {
  lot_id: Uuid
  amount: Int
  category: LotCategory
  expires_at: Timestamp
}

export interface DailyUsage {
  used: Int
  /** null: the plan has no daily cap */
  cap: Int | null
}

/** get_balance() */
export interface BalanceResult {
  balance: Int
  available: Int
  /** credits still owed after a clawback; paid first from any credit that arrives */
  owed: Int
  plan: string
  expiring: ExpiringLot[]
  daily: DailyUsage
}

/** save_media(media_id) and delete_media(media_id) */
export interface MediaResult {
  id: Uuid
  generation_id: Uuid
  saved: boolean
  expires_at: Timestamp | null
  deleted_at: Timestamp | null
}

// --- credit entries (grants, purchases, admin recharges) -------------------------------------

/** A posted credit entry and the lot it created; a replayed key returns the original. */
export interface CreditEntryResult {
  entry_id: Int
  entry_type: CreditEntryType
  amount: Int
  balance: Int
  replayed: boolean
  lot_id: Uuid
}

/** A paid checkout that matched its pack: the purchase entry. */
export interface CheckoutGranted extends CreditEntryResult {
  entry_type: "purchase"
  pack_id: string
  credits: Int
}

/** A checkout whose amount or currency did not match the pack: held, nothing granted. */
export interface CheckoutHeld {
  held: true
  reason: string
  pack_id: string
  credits: 0
  expected_amount: Int
  expected_currency: string
  amount: Int | null
  currency: string | null
  replayed: boolean
}

/** service_apply_checkout(event_id, user_id, price_id, quantity, amount_total, currency, session_id, amount_tax) */
export type CheckoutResult = CheckoutGranted | CheckoutHeld

/** service_clawback, service_stripe_refund and service_stripe_dispute: what was taken back */
export interface ClawbackResult {
  requested: Int
  taken: Int
  shortfall: Int
  /** null when nothing could be taken */
  entry_id: Int | null
  balance: Int
  replayed: boolean
}

/** service_stripe_dispute_won(dispute_id, user_id, payment_id, reason) */
export interface DisputeWonResult {
  /** credits the dispute's clawback took that went back to the user */
  returned: Int
  /** what was still owed for the dispute, cancelled */
  cancelled: Int
  /** null when nothing was returned */
  entry_id: Int | null
  balance: Int
  replayed: boolean
}

// --- admin functions -------------------------------------------------------------------------

/** admin_set_setting(key, value) */
export interface SettingResult {
  key: string
  value: JsonValue
}

/** admin_set_model_enabled(model_id, enabled) */
export interface ModelEnabledResult {
  model_id: string
  enabled: boolean
}

export interface ModelStats {
  count: Int
  succeeded: Int
  failed: Int
  credits: Int
}

export interface DayStats {
  day: DateOnly
  count: Int
  succeeded: Int
  failed: Int
}

export interface ProviderStats {
  provider: string
  calls: Int
  failures: Int
  failure_rate: Decimal
  p50_latency_ms: Decimal | null
}

/** admin_stats(since) */
export interface AdminStatsResult {
  since: Timestamp
  users: { total: Int; new: Int; active: Int }
  generations: {
    total: Int
    by_status: { [status: string]: Int }
    by_kind: { [kind: string]: Int }
    by_model: { [model_id: string]: ModelStats }
    by_day: DayStats[]
  }
  credits: {
    granted: Int
    spent: Int
    refunded: Int
    expired: Int
    forfeited: Int
    clawed_back: Int
    net_spent: Int
  }
  providers: ProviderStats[]
}

// --- service functions (service_role) --------------------------------------------------------

export interface JobRoute {
  provider: string
  provider_model: string
  endpoint: string
  options: JsonValue
}

export interface JobLora {
  id: string
  weight: Decimal
  /** null when the LoRA has no source registered */
  source: string | null
}

export interface JobInitMedia {
  media_id: Uuid
  storage_key: string
  content_type: string
}

/** One job of service_claim_generations: server-only, never sent to a client. */
export interface ClaimedJob {
  generation_id: Uuid
  user_id: Uuid
  kind: GenerationKind
  model_id: string
  params: GenerationParams
  attempt: Int
  max_attempts: Int
  lease_token: Uuid
  lease_expires_at: Timestamp
  cost: Int
  route: JobRoute | null
  loras: JobLora[]
  /** edit jobs: the input image (null if it is gone); null for other kinds */
  init_media: JobInitMedia | null
}

/** service_heartbeat(generation_id, worker_id, lease_token, lease_seconds) */
export interface HeartbeatResult {
  generation_id: Uuid
  lease_expires_at: Timestamp
}

export interface StoredMedia {
  media_id: Uuid
  storage_key: string
}

/** A settle that finished the generation (a failure is refunded in full). */
export interface SettledResult {
  generation_id: Uuid
  status: "succeeded" | "failed"
  refunded: Int
  actual_cost: Int
  media: StoredMedia[]
  requeued: false
}

/** A retryable failure with attempts left: back to queued, nothing refunded yet. */
export interface RequeuedResult {
  generation_id: Uuid
  status: "queued"
  refunded: Int
  actual_cost: null
  media: StoredMedia[]
  requeued: true
}

/** service_settle_generation(generation_id, worker_id, lease_token, outcome) */
export type SettleResult = SettledResult | RequeuedResult

/** service_reap_expired_leases(now) */
export interface ReapResult {
  requeued: Int
  failed: Int
  refunded: Int
}

/** service_expire_credits(now, max_lots) */
export interface ExpireCreditsResult {
  users: Int
  lots: Int
  credits: Int
  /** more lapsed lots are waiting: call again */
  more: boolean
}

/** service_mark_media_purged(media_ids) */
export interface MarkMediaPurgedResult {
  purged: Int
}

export interface AuditCheck {
  name: string
  failures: Int
  /** up to five offending rows */
  samples: { [column: string]: JsonValue }[]
}

/** audit(since) */
export interface AuditResult {
  ok: boolean
  checks: AuditCheck[]
}

// --- operations: jobs, status, webhooks (service_role and admins) ---------------------------

export interface JobRun {
  job: string
  ok: boolean
  /** the job's own result ({lots, credits, ...} for expire-credits, {deleted} for prune...) */
  result: JsonValue
}

/** service_run_due_jobs(runner, now) */
export interface RunDueJobsResult {
  /** another runner holds the lock: nothing ran */
  locked: boolean
  ran: JobRun[]
}

export interface JobStatus {
  name: string
  runner: string
  cron_schedule: string
  interval_seconds: Int
  last_started_at: Timestamp | null
  last_ok: boolean | null
  last_duration_ms: Int | null
  overdue: boolean
}

/** service_ops_status(now) */
export interface OpsStatusResult {
  at: Timestamp
  queue: { depth: Int; oldest_age_seconds: Decimal }
  leases: { running: Int; expired: Int }
  providers: { provider: string; calls: Int; failures: Int; failure_rate: Decimal }[]
  outbox: { pending: Int; parked: Int; events_last_hour: Int; oldest_pending_age_seconds: Decimal }
  audit: { id: Int; ok: boolean; failures: Int; started_at: Timestamp; age_seconds: Decimal } | null
  jobs: JobStatus[]
  /** what an operator must look at; empty when all is well */
  attention: string[]
}

/** admin_add_webhook_endpoint(url, event_types, secret, description): the secret is shown once */
export interface WebhookEndpointAdded {
  endpoint_id: Uuid
  url: string
  event_types: string[]
  secret: string
}

/** One row of admin_list_webhook_endpoints() */
export interface WebhookEndpoint {
  endpoint_id: Uuid
  url: string
  description: string | null
  event_types: string[]
  enabled: boolean
  disabled_reason: string | null
  pending: Int
  parked: Int
  created_at: Timestamp
}

/** admin_disable_webhook_endpoint(endpoint_id) */
export interface WebhookEndpointDisabled {
  endpoint_id: Uuid
  enabled: false
  /** pending deliveries canceled */
  canceled: Int
}

export type DeliveryStatus = "pending" | "delivered" | "parked" | "canceled"

export interface DeliveryAttempt {
  attempt: Int
  outcome: string
  http_status: Int | null
  latency_ms: Int | null
  error: string | null
  started_at: Timestamp
}

/** One row of admin_webhook_deliveries(endpoint_id, status, max_items) */
export interface WebhookDelivery {
  delivery_id: Int
  endpoint_id: Uuid
  event_id: Uuid
  event_type: string
  status: DeliveryStatus
  attempts: Int
  last_http_status: Int | null
  last_error: string | null
  next_attempt_at: Timestamp | null
  delivered_at: Timestamp | null
  created_at: Timestamp
  history: DeliveryAttempt[]
}

/** admin_redeliver_webhook(delivery_id) */
export interface RedeliverResult {
  delivery_id: Int
  status: DeliveryStatus
}

/** One delivery of service_claim_webhook_deliveries: server-only (carries the secret). */
export interface ClaimedDelivery {
  delivery_id: Int
  lease_token: Uuid
  attempt: Int
  url: string
  secret: string
  webhook_id: string
  event_type: string
  /** the exact JSON text to sign and send */
  body: string
  allow_loopback: boolean
}

/** service_finish_webhook_delivery(delivery_id, worker_id, lease_token, outcome) */
export interface FinishDeliveryResult {
  delivery_id: Int
  status: DeliveryStatus
  next_attempt_at: Timestamp | null
}

// --- console reads (admins) ------------------------------------------------------------------

export interface DailyCredits {
  day: DateOnly
  sold: Int
  granted: Int
  spent: Int
  refunded: Int
  expired: Int
  clawed_back: Int
}

export interface DailyProviders {
  day: DateOnly
  calls: Int
  failures: Int
  failure_rate: Decimal
  p50_latency_ms: Decimal | null
  p95_latency_ms: Decimal | null
}

/** admin_daily_stats(since) */
export interface DailyStatsResult {
  since: Timestamp
  days: DateOnly[]
  credits: DailyCredits[]
  outstanding: { day: DateOnly; balance: Int }[]
  generations_by_status: { day: DateOnly; status: GenerationStatus; count: Int }[]
  generations_by_model: { day: DateOnly; model_id: string; count: Int }[]
  providers: DailyProviders[]
}

/** admin_find_user(query) */
export interface FoundUser {
  user: { id: Uuid; email: string | null; created_at: Timestamp | null; is_admin: boolean }
  balance: { balance: Int; plan: string; available: Int; owed: Int }
  lots: {
    id: Uuid
    amount: Int
    remaining: Int
    category: LotCategory
    priority: Int
    expires_at: Timestamp | null
    created_at: Timestamp
  }[]
  ledger: {
    id: Int
    entry_type: string
    amount: Int
    delta: Int
    balance_after: Int
    reason: string | null
    generation_id: Uuid | null
    created_at: Timestamp
  }[]
  generations: {
    id: Uuid
    model_id: string
    kind: GenerationKind
    status: GenerationStatus
    cost: Int
    created_at: Timestamp
    finished_at: Timestamp | null
  }[]
}

/** One row of admin_list_models() (disabled models too) */
export interface AdminModel {
  id: string
  kind: GenerationKind
  name: string
  enabled: boolean
}

/** One row of admin_get_settings() */
export interface AdminSetting {
  key: string
  value: JsonValue
  default: JsonValue
  description: string
  updated_at: Timestamp | null
}

/** One row of admin_audit_runs(): a stored audit() run (the scheduled daily audit), newest first */
export interface AuditRun {
  id: Int
  started_at: Timestamp
  finished_at: Timestamp
  ok: boolean
  failures: Int
}

// --- every RPC -------------------------------------------------------------------------------

/** The result of each function in schema creditgate, by name. */
export interface RpcResults {
  admin_add_credits: CreditEntryResult
  admin_add_webhook_endpoint: WebhookEndpointAdded
  admin_audit_runs: AuditRun[]
  admin_daily_stats: DailyStatsResult
  admin_disable_webhook_endpoint: WebhookEndpointDisabled
  admin_find_user: FoundUser
  admin_get_settings: AdminSetting[]
  admin_list_models: AdminModel[]
  admin_list_webhook_endpoints: WebhookEndpoint[]
  admin_redeliver_webhook: RedeliverResult
  admin_run_audit: AuditResult
  admin_webhook_deliveries: WebhookDelivery[]
  admin_set_model_enabled: ModelEnabledResult
  admin_set_setting: SettingResult
  admin_stats: AdminStatsResult
  audit: AuditResult
  cancel_generation: CancelGenerationResult
  delete_media: MediaResult
  get_balance: BalanceResult
  is_admin: boolean
  quote: QuoteResult
  request_generation: RequestGenerationResult
  save_media: MediaResult
  service_apply_checkout: CheckoutResult
  service_claim_generations: ClaimedJob[]
  service_claim_webhook_deliveries: ClaimedDelivery[]
  service_clawback: ClawbackResult
  service_expire_credits: ExpireCreditsResult
  service_expired_media: StoredMedia[]
  service_finish_webhook_delivery: FinishDeliveryResult
  service_grant_credits: CreditEntryResult
  service_heartbeat: HeartbeatResult
  service_mark_media_purged: MarkMediaPurgedResult
  service_ops_status: OpsStatusResult
  service_reap_expired_leases: ReapResult
  service_run_due_jobs: RunDueJobsResult
  service_settle_generation: SettleResult
  service_stripe_dispute: ClawbackResult
  service_stripe_dispute_won: DisputeWonResult
  service_stripe_refund: ClawbackResult
}
