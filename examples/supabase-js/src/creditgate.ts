// A typed creditgate client on supabase-js: the generated Database type with each RPC's
// result interface (supabase/types/index.ts), and creditgate's errors mapped to messages.
import { createClient, type PostgrestError } from "@supabase/supabase-js"

import type {
  BalanceResult,
  CreditgateDatabase,
  GenerationRow,
  QuoteResult,
  RequestGenerationResult,
} from "../../../supabase/types/index.js"

export type { BalanceResult, GenerationRow, QuoteResult, RequestGenerationResult }

/** The client app's view of creditgate: schema `creditgate` through the Data API. */
export function connect(supabaseUrl: string, anonKey: string) {
  return createClient<CreditgateDatabase, "creditgate">(supabaseUrl, anonKey, {
    db: { schema: "creditgate" },
  })
}

export type CreditgateClient = ReturnType<typeof connect>

/** DETAIL of each intentional error (DESIGN.md §5), as PostgREST passes it on. */
export interface InsufficientCredits { required: number; available: number }
export interface RateLimited { scope: string; retry_after_seconds: number }
export interface DailyCapReached { cap: number; used: number; resets_at: string }

/** An intentional creditgate error (SQLSTATE PTxyz = HTTP xyz), with a message for people. */
export class CreditgateError extends Error {
  constructor(
    readonly code: string,
    readonly reason: string,
    readonly details: Record<string, unknown>,
    readonly userMessage: string,
  ) {
    super(`${code} ${reason}: ${userMessage}`)
  }

  /** Seconds to wait before retrying (rate limits), else null. */
  get retryAfterSeconds(): number | null {
    const seconds = this.details["retry_after_seconds"]
    return typeof seconds === "number" ? seconds : null
  }
}

function parseDetails(details: string | null | undefined): Record<string, unknown> {
  if (!details) return {}
  try {
    const parsed: unknown = JSON.parse(details)
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {}
  } catch {
    return {}
  }
}

/** What to tell the user for a creditgate error (PT402, PT429, PT409, PT503, ...). */
export function describe(error: Pick<PostgrestError, "code" | "message" | "details">): CreditgateError {
  const details = parseDetails(error.details)
  const reason = error.message
  let text: string
  switch (error.code) {
    case "PT402": {
      const d = details as Partial<InsufficientCredits>
      text = `Not enough credits: this costs ${d.required ?? "?"}, you have ${d.available ?? "?"}.`
      break
    }
    case "PT429":
      if (reason === "daily_cap_reached") {
        const d = details as Partial<DailyCapReached>
        text = `Daily limit reached (${d.used ?? "?"} of ${d.cap ?? "?"} credits); it resets at ${d.resets_at ?? "midnight UTC"}.`
      } else {
        const d = details as Partial<RateLimited>
        text = `Too many requests: try again in ${d.retry_after_seconds ?? "a few"} seconds.`
      }
      break
    case "PT409":
      text =
        reason === "idempotency_key_reused"
          ? "This request key was already used for a different request: make a new one."
          : "That generation can no longer be changed (it has already started or finished)."
      break
    case "PT503":
      text =
        reason === "maintenance"
          ? "Generation is paused for maintenance; please try again later."
          : "This model is not available right now; pick another one."
      break
    case "PT401":
      text = "Please sign in again."
      break
    case "PT400":
      text = `Invalid request (${String(details["field"] ?? "params")}: ${String(details["reason"] ?? "check it")}).`
      break
    case "PT404":
      text = "Not found."
      break
    default:
      text = "Something went wrong; please try again."
  }
  return new CreditgateError(error.code, reason, details, text)
}

/** data of a supabase-js response, or the creditgate error it carries. */
export function unwrap<T>(response: { data: T | null; error: PostgrestError | null }): T {
  if (response.error) throw describe(response.error)
  if (response.data === null) throw new Error("empty response")
  return response.data
}
