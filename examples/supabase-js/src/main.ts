// creditgate from a supabase-js app, step by step: sign in, show the balance, quote, request
// a generation with an idempotency key, follow its status through Realtime, show its media
// through signed URLs. Every RPC name, argument and result is typed from supabase/types.
//
//   SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=... \
//   CREDITGATE_URL=https://creditgate.example.com EMAIL=... PASSWORD=... node main.js
import { randomUUID } from "node:crypto"

import {
  connect,
  CreditgateError,
  unwrap,
  type CreditgateClient,
  type GenerationRow,
  type QuoteResult,
  type RequestGenerationResult,
} from "./creditgate.js"

const TERMINAL = new Set(["succeeded", "failed", "canceled"])

/** What the creditgate service returns for GET /v1/generations/{id}: media with signed URLs. */
interface SignedMedia {
  id: string
  content_type: string
  url: string | null
  url_expires_in: number | null
}
interface GenerationDetail {
  id: string
  status: string
  media: SignedMedia[]
}

/** The columns of a generation its owner sees in a Realtime change. */
type GenerationChange = Pick<GenerationRow, "id" | "status" | "error" | "finished_at">

function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`set ${name}`)
  return value
}

async function signIn(client: CreditgateClient, email: string, password: string): Promise<string> {
  const { data, error } = await client.auth.signInWithPassword({ email, password })
  if (error) throw new Error(`sign-in failed: ${error.message}`)
  return data.user.id
}

async function showBalance(client: CreditgateClient): Promise<number> {
  const balance = unwrap(await client.rpc("get_balance"))
  console.log(`balance ${balance.balance} (spendable ${balance.available}, plan ${balance.plan})`)
  for (const lot of balance.expiring) {
    console.log(`  ${lot.amount} ${lot.category} credits expire at ${lot.expires_at}`)
  }
  if (balance.owed > 0) {
    console.log(`  ${balance.owed} credits owed after a chargeback: paid first from new credits`)
  }
  const cap = balance.daily.cap === null ? "no cap" : `cap ${balance.daily.cap}`
  console.log(`  today: ${balance.daily.used} used, ${cap}`)
  return balance.available
}

async function quote(client: CreditgateClient, prompt: string): Promise<QuoteResult> {
  const price = unwrap(
    await client.rpc("quote", { model_id: "sdxl", params: { prompt, width: 1024, height: 1024 } }),
  )
  console.log(`${price.model_id} (${price.kind}) costs ${price.cost} credits`, price.breakdown)
  return price
}

async function request(
  client: CreditgateClient,
  price: QuoteResult,
  idempotencyKey: string,
): Promise<RequestGenerationResult> {
  // Retrying with the same key never charges twice: it returns the original, replayed: true.
  const result = unwrap(
    await client.rpc("request_generation", {
      model_id: price.model_id,
      params: { prompt: "a lighthouse at dusk", width: 1024, height: 1024 },
      idempotency_key: idempotencyKey,
    }),
  )
  console.log(
    `generation ${result.generation_id} ${result.status}: charged ${result.cost}, balance ${result.balance}` +
      (result.replayed ? " (replayed)" : ""),
  )
  return result
}

/** Resolves with the generation's final status, from Realtime (postgres_changes). */
function follow(client: CreditgateClient, userId: string, generationId: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const channel = client
      .channel(`generations:${userId}`)
      .on<GenerationChange>(
        "postgres_changes",
        { event: "UPDATE", schema: "creditgate", table: "generations", filter: `user_id=eq.${userId}` },
        (payload) => {
          const row = payload.new
          if (!("id" in row) || row.id !== generationId) return
          console.log(`status: ${row.status}`)
          if (TERMINAL.has(row.status)) {
            void client.removeChannel(channel)
            resolve(row.status)
          }
        },
      )
      .subscribe((status, err) => {
        if (status === "CHANNEL_ERROR" || status === "TIMED_OUT") {
          reject(err ?? new Error(`realtime: ${status}`))
        }
      })
  })
}

/** Signed, expiring media URLs come from the creditgate service (storage stays private). */
async function showMedia(client: CreditgateClient, serviceUrl: string, generationId: string): Promise<void> {
  const { data } = await client.auth.getSession()
  const token = data.session?.access_token
  if (!token) throw new Error("not signed in")
  const response = await fetch(`${serviceUrl}/v1/generations/${generationId}`, {
    headers: { authorization: `Bearer ${token}` },
  })
  if (!response.ok) throw new Error(`GET generation: HTTP ${response.status}`)
  const detail = (await response.json()) as GenerationDetail
  for (const media of detail.media) {
    console.log(`${media.content_type}: ${media.url ?? "(deleted)"} (valid ${media.url_expires_in ?? 0} s)`)
  }
}

async function main(): Promise<void> {
  const client = connect(env("SUPABASE_URL"), env("SUPABASE_ANON_KEY"))
  const userId = await signIn(client, env("EMAIL"), env("PASSWORD"))
  await showBalance(client)
  const price = await quote(client, "a lighthouse at dusk")
  // One key per user action, kept across retries of that action.
  const key = randomUUID()
  const result = await request(client, price, key)
  const status = await follow(client, userId, result.generation_id)
  if (status === "succeeded") await showMedia(client, env("CREDITGATE_URL"), result.generation_id)
  else console.log(`generation ${status}; its credits were refunded`)
  await showBalance(client)
}

main().catch((error: unknown) => {
  if (error instanceof CreditgateError) {
    console.error(error.userMessage)
    if (error.retryAfterSeconds !== null) console.error(`(retry after ${error.retryAfterSeconds} s)`)
  } else {
    console.error(error)
  }
  process.exitCode = 1
})
