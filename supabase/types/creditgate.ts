export type Json =
  | string
  | number
  | boolean
  | null
  | { [key: string]: Json | undefined }
  | Json[]

export type Database = {
  creditgate: {
    Tables: {
      balances: {
        Row: {
          balance: number
          created_at: string
          daily_used: number
          daily_used_on: string | null
          owed: number
          plan: string
          updated_at: string
          user_id: string
        }
        Insert: {
          balance?: number
          created_at?: string
          daily_used?: number
          daily_used_on?: string | null
          owed?: number
          plan?: string
          updated_at?: string
          user_id: string
        }
        Update: {
          balance?: number
          created_at?: string
          daily_used?: number
          daily_used_on?: string | null
          owed?: number
          plan?: string
          updated_at?: string
          user_id?: string
        }
        Relationships: []
      }
      credit_lots: {
        Row: {
          amount: number
          category: string
          created_at: string
          expires_at: string | null
          id: string
          live: boolean | null
          priority: number
          remaining: number
          source_entry_id: number
          user_id: string
        }
        Insert: {
          amount: number
          category: string
          created_at?: string
          expires_at?: string | null
          id?: string
          live?: never
          priority?: number
          remaining: number
          source_entry_id: number
          user_id: string
        }
        Update: {
          amount?: number
          category?: string
          created_at?: string
          expires_at?: string | null
          id?: string
          live?: never
          priority?: number
          remaining?: number
          source_entry_id?: number
          user_id?: string
        }
        Relationships: [
          {
            foreignKeyName: "credit_lots_source_entry_id_fkey"
            columns: ["source_entry_id"]
            isOneToOne: false
            referencedRelation: "ledger"
            referencedColumns: ["id"]
          },
          {
            foreignKeyName: "credit_lots_user_id_fkey"
            columns: ["user_id"]
            isOneToOne: false
            referencedRelation: "balances"
            referencedColumns: ["user_id"]
          },
        ]
      }
      credit_packs: {
        Row: {
          active: boolean
          category: string
          created_at: string
          credits: number
          currency: string
          expires_after: string | null
          id: string
          name: string
          price_cents: number
          priority: number
          stripe_price_id: string
        }
        Insert: {
          active?: boolean
          category?: string
          created_at?: string
          credits: number
          currency?: string
          expires_after?: string | null
          id: string
          name: string
          price_cents: number
          priority?: number
          stripe_price_id: string
        }
        Update: {
          active?: boolean
          category?: string
          created_at?: string
          credits?: number
          currency?: string
          expires_after?: string | null
          id?: string
          name?: string
          price_cents?: number
          priority?: number
          stripe_price_id?: string
        }
        Relationships: []
      }
      generations: {
        Row: {
          actual_cost: number | null
          attempts: number
          cost: number
          created_at: string
          error: Json | null
          finished_at: string | null
          id: string
          idempotency_key: string
          kind: string
          max_attempts: number
          model_id: string
          output: Json | null
          params: NonNullable<Json>
          prices: Json | null
          started_at: string | null
          status: string
          updated_at: string
          user_id: string
        }
        Insert: {
          actual_cost?: number | null
          attempts?: number
          cost: number
          created_at?: string
          error?: Json | null
          finished_at?: string | null
          id?: string
          idempotency_key: string
          kind: string
          max_attempts?: number
          model_id: string
          output?: Json | null
          params: NonNullable<Json>
          prices?: Json | null
          started_at?: string | null
          status?: string
          updated_at?: string
          user_id: string
        }
        Update: {
          actual_cost?: number | null
          attempts?: number
          cost?: number
          created_at?: string
          error?: Json | null
          finished_at?: string | null
          id?: string
          idempotency_key?: string
          kind?: string
          max_attempts?: number
          model_id?: string
          output?: Json | null
          params?: NonNullable<Json>
          prices?: Json | null
          started_at?: string | null
          status?: string
          updated_at?: string
          user_id?: string
        }
        Relationships: [
          {
            foreignKeyName: "generations_user_id_fkey"
            columns: ["user_id"]
            isOneToOne: false
            referencedRelation: "balances"
            referencedColumns: ["user_id"]
          },
        ]
      }
      ledger: {
        Row: {
          amount: number
          balance_after: number
          charge_key: string | null
          created_at: string
          delta: number
          entry_type: string
          generation_id: string | null
          id: number
          idempotency_key: string
          metadata: NonNullable<Json>
          reason: string | null
          request_hash: string
          user_id: string
        }
        Insert: {
          amount: number
          balance_after: number
          charge_key?: string | null
          created_at?: string
          delta: number
          entry_type: string
          generation_id?: string | null
          id?: never
          idempotency_key: string
          metadata?: NonNullable<Json>
          reason?: string | null
          request_hash: string
          user_id: string
        }
        Update: {
          amount?: number
          balance_after?: number
          charge_key?: string | null
          created_at?: string
          delta?: number
          entry_type?: string
          generation_id?: string | null
          id?: never
          idempotency_key?: string
          metadata?: NonNullable<Json>
          reason?: string | null
          request_hash?: string
          user_id?: string
        }
        Relationships: [
          {
            foreignKeyName: "ledger_user_id_fkey"
            columns: ["user_id"]
            isOneToOne: false
            referencedRelation: "balances"
            referencedColumns: ["user_id"]
          },
        ]
      }
      loras: {
        Row: {
          created_at: string
          description: string
          enabled: boolean
          id: string
          model_ids: string[]
          name: string
          price: number
        }
        Insert: {
          created_at?: string
          description?: string
          enabled?: boolean
          id: string
          model_ids: string[]
          name: string
          price?: number
        }
        Update: {
          created_at?: string
          description?: string
          enabled?: boolean
          id?: string
          model_ids?: string[]
          name?: string
          price?: number
        }
        Relationships: []
      }
      media: {
        Row: {
          bytes: number
          content_type: string
          created_at: string
          deleted_at: string | null
          duration_seconds: number | null
          expires_at: string | null
          generation_id: string
          height: number | null
          id: string
          position: number
          purged_at: string | null
          saved: boolean
          storage_key: string
          user_id: string
          width: number | null
        }
        Insert: {
          bytes: number
          content_type: string
          created_at?: string
          deleted_at?: string | null
          duration_seconds?: number | null
          expires_at?: string | null
          generation_id: string
          height?: number | null
          id?: string
          position?: number
          purged_at?: string | null
          saved?: boolean
          storage_key: string
          user_id: string
          width?: number | null
        }
        Update: {
          bytes?: number
          content_type?: string
          created_at?: string
          deleted_at?: string | null
          duration_seconds?: number | null
          expires_at?: string | null
          generation_id?: string
          height?: number | null
          id?: string
          position?: number
          purged_at?: string | null
          saved?: boolean
          storage_key?: string
          user_id?: string
          width?: number | null
        }
        Relationships: [
          {
            foreignKeyName: "media_generation_id_fkey"
            columns: ["generation_id"]
            isOneToOne: false
            referencedRelation: "generations"
            referencedColumns: ["id"]
          },
          {
            foreignKeyName: "media_user_id_fkey"
            columns: ["user_id"]
            isOneToOne: false
            referencedRelation: "balances"
            referencedColumns: ["user_id"]
          },
        ]
      }
      models: {
        Row: {
          created_at: string
          defaults: NonNullable<Json>
          description: string
          enabled: boolean
          id: string
          kind: string
          max_duration_seconds: number | null
          max_height: number | null
          max_loras: number
          max_output_tokens: number | null
          max_pixels: number | null
          max_prompt_length: number
          max_steps: number | null
          max_width: number | null
          name: string
          price_base: number
          price_per_1k_tokens: number
          price_per_megapixel: number
          price_per_second: number
          price_per_step: number
          sort_order: number
        }
        Insert: {
          created_at?: string
          defaults?: NonNullable<Json>
          description?: string
          enabled?: boolean
          id: string
          kind: string
          max_duration_seconds?: number | null
          max_height?: number | null
          max_loras?: number
          max_output_tokens?: number | null
          max_pixels?: number | null
          max_prompt_length?: number
          max_steps?: number | null
          max_width?: number | null
          name: string
          price_base?: number
          price_per_1k_tokens?: number
          price_per_megapixel?: number
          price_per_second?: number
          price_per_step?: number
          sort_order?: number
        }
        Update: {
          created_at?: string
          defaults?: NonNullable<Json>
          description?: string
          enabled?: boolean
          id?: string
          kind?: string
          max_duration_seconds?: number | null
          max_height?: number | null
          max_loras?: number
          max_output_tokens?: number | null
          max_pixels?: number | null
          max_prompt_length?: number
          max_steps?: number | null
          max_width?: number | null
          name?: string
          price_base?: number
          price_per_1k_tokens?: number
          price_per_megapixel?: number
          price_per_second?: number
          price_per_step?: number
          sort_order?: number
        }
        Relationships: []
      }
    }
    Views: {
      [_ in never]: never
    }
    Functions: {
      admin_add_credits: {
        Args: {
          amount: number
          idempotency_key: string
          reason: string
          user_id: string
        }
        Returns: Json
      }
      admin_add_webhook_endpoint: {
        Args: {
          description?: string
          event_types: string[]
          secret?: string
          url: string
        }
        Returns: Json
      }
      admin_daily_stats: { Args: { since?: string }; Returns: Json }
      admin_disable_webhook_endpoint: {
        Args: { endpoint_id: string }
        Returns: Json
      }
      admin_find_user: { Args: { query: string }; Returns: Json }
      admin_get_settings: { Args: Record<PropertyKey, never>; Returns: Json }
      admin_list_models: { Args: Record<PropertyKey, never>; Returns: Json }
      admin_list_webhook_endpoints: {
        Args: Record<PropertyKey, never>
        Returns: Json
      }
      admin_redeliver_webhook: { Args: { delivery_id: number }; Returns: Json }
      admin_run_audit: { Args: Record<PropertyKey, never>; Returns: Json }
      admin_set_model_enabled: {
        Args: { enabled: boolean; model_id: string }
        Returns: Json
      }
      admin_set_setting: { Args: { key: string; value: Json }; Returns: Json }
      admin_stats: { Args: { since?: string }; Returns: Json }
      admin_webhook_deliveries: {
        Args: { endpoint_id?: string; max_items?: number; status?: string }
        Returns: Json
      }
      audit: { Args: { since?: string }; Returns: Json }
      cancel_generation: { Args: { generation_id: string }; Returns: Json }
      delete_media: { Args: { media_id: string }; Returns: Json }
      get_balance: { Args: Record<PropertyKey, never>; Returns: Json }
      is_admin: { Args: Record<PropertyKey, never>; Returns: boolean }
      quote: { Args: { model_id: string; params: Json }; Returns: Json }
      request_generation: {
        Args: { idempotency_key: string; model_id: string; params: Json }
        Returns: Json
      }
      save_media: { Args: { media_id: string }; Returns: Json }
      service_apply_checkout: {
        Args: {
          amount_tax?: number
          amount_total?: number
          currency?: string
          event_id: string
          price_id: string
          quantity?: number
          session_id?: string
          user_id: string
        }
        Returns: Json
      }
      service_claim_generations: {
        Args: { lease_seconds?: number; max_jobs?: number; worker_id: string }
        Returns: Json
      }
      service_claim_webhook_deliveries: {
        Args: { lease_seconds?: number; max_items?: number; worker_id: string }
        Returns: Json
      }
      service_clawback: {
        Args: {
          amount: number
          event_id: string
          reason: string
          user_id: string
        }
        Returns: Json
      }
      service_expire_credits: {
        Args: { max_lots?: number; now?: string }
        Returns: Json
      }
      service_expired_media: {
        Args: { max_items?: number; now?: string }
        Returns: Json
      }
      service_finish_webhook_delivery: {
        Args: {
          delivery_id: number
          lease_token: string
          outcome: Json
          worker_id: string
        }
        Returns: Json
      }
      service_grant_credits: {
        Args: {
          amount: number
          category?: string
          entry_type: string
          expires_at?: string
          idempotency_key: string
          metadata?: Json
          priority?: number
          reason?: string
          user_id: string
        }
        Returns: Json
      }
      service_heartbeat: {
        Args: {
          generation_id: string
          lease_seconds?: number
          lease_token: string
          worker_id: string
        }
        Returns: Json
      }
      service_mark_media_purged: {
        Args: { media_ids: string[] }
        Returns: Json
      }
      service_ops_status: { Args: { now?: string }; Returns: Json }
      service_reap_expired_leases: { Args: { now?: string }; Returns: Json }
      service_run_due_jobs: {
        Args: { now?: string; runner: string }
        Returns: Json
      }
      service_settle_generation: {
        Args: {
          generation_id: string
          lease_token: string
          outcome: Json
          worker_id: string
        }
        Returns: Json
      }
      service_stripe_dispute: {
        Args: {
          credits: number
          dispute_id: string
          payment_id: string
          reason?: string
          user_id: string
        }
        Returns: Json
      }
      service_stripe_dispute_won: {
        Args: {
          dispute_id: string
          payment_id: string
          reason?: string
          user_id: string
        }
        Returns: Json
      }
      service_stripe_refund: {
        Args: {
          amount_refunded: number
          credits: number
          payment_amount: number
          payment_id: string
          reason?: string
          refund_id: string
          user_id: string
        }
        Returns: Json
      }
    }
    Enums: {
      [_ in never]: never
    }
    CompositeTypes: {
      [_ in never]: never
    }
  }
}

type DatabaseWithoutInternals = Omit<Database, "__InternalSupabase">

type DefaultSchema = DatabaseWithoutInternals[Extract<keyof Database, "public">]

export type Tables<
  DefaultSchemaTableNameOrOptions extends
    | keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends (DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
        DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])
    : never) = never,
> = DefaultSchemaTableNameOrOptions extends {
  schema: keyof DatabaseWithoutInternals
}
  ? (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
      DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])[TableName] extends {
      Row: infer R
    }
    ? R
    : never
  : DefaultSchemaTableNameOrOptions extends keyof (DefaultSchema["Tables"] &
        DefaultSchema["Views"])
    ? (DefaultSchema["Tables"] &
        DefaultSchema["Views"])[DefaultSchemaTableNameOrOptions] extends {
        Row: infer R
      }
      ? R
      : never
    : never

export type TablesInsert<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends (DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never) = never,
> = DefaultSchemaTableNameOrOptions extends {
  schema: keyof DatabaseWithoutInternals
}
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Insert: infer I
    }
    ? I
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
    ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
        Insert: infer I
      }
      ? I
      : never
    : never

export type TablesUpdate<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends (DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never) = never,
> = DefaultSchemaTableNameOrOptions extends {
  schema: keyof DatabaseWithoutInternals
}
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Update: infer U
    }
    ? U
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
    ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
        Update: infer U
      }
      ? U
      : never
    : never

export type Enums<
  DefaultSchemaEnumNameOrOptions extends
    | keyof DefaultSchema["Enums"]
    | { schema: keyof DatabaseWithoutInternals },
  EnumName extends (DefaultSchemaEnumNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"]
    : never) = never,
> = DefaultSchemaEnumNameOrOptions extends {
  schema: keyof DatabaseWithoutInternals
}
  ? DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"][EnumName]
  : DefaultSchemaEnumNameOrOptions extends keyof DefaultSchema["Enums"]
    ? DefaultSchema["Enums"][DefaultSchemaEnumNameOrOptions]
    : never

export type CompositeTypes<
  PublicCompositeTypeNameOrOptions extends
    | keyof DefaultSchema["CompositeTypes"]
    | { schema: keyof DatabaseWithoutInternals },
  CompositeTypeName extends (PublicCompositeTypeNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"]
    : never) = never,
> = PublicCompositeTypeNameOrOptions extends {
  schema: keyof DatabaseWithoutInternals
}
  ? DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"][CompositeTypeName]
  : PublicCompositeTypeNameOrOptions extends keyof DefaultSchema["CompositeTypes"]
    ? DefaultSchema["CompositeTypes"][PublicCompositeTypeNameOrOptions]
    : never

export const Constants = {
  creditgate: {
    Enums: {},
  },
} as const

