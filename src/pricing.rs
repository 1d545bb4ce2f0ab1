//! What tokens cost: the dated list prices shipped in the binary, the
//! canonical names usage is priced under, and the cost of a usage row.
//!
//! Prices are kept in micro-USD per million tokens (`3.0` USD/Mtok is
//! `3_000_000`), so every price a provider lists is exact; costs come out
//! in ticks of 1e-10 USD, the unit daemons report `cost_usd_ticks` in
//! (a token at 1 micro-USD per Mtok costs 0.01 tick: costs are summed in
//! i128 hundredths of a tick and rounded once).
//!
//! Names: daemons report the agent CLI as the provider (`claude`, `codex`,
//! `opencode`, …) and the model as the CLI names it
//! (`claude-sonnet-4-5-20250929`, `anthropic/claude-sonnet-4.5`,
//! `gemini-2.5-pro-preview-06-05`, …). [`canonical`] turns both into the
//! vendor and the model family a price list uses (`anthropic`,
//! `claude-sonnet-4-5`); prices, overrides and lookups all use those.

use chrono::NaiveDate;
use serde::Serialize;

/// Micro-USD per million tokens for each kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

/// Where a price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    Builtin,
    Override,
}

/// A price of (provider, model) from `effective_from` on, until a later
/// row of the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub price: Price,
    pub effective_from: NaiveDate,
    pub source: PriceSource,
}

/// One built-in price: provider, model, input, output, cache read, cache
/// write (USD per million tokens, as the provider lists them), and the
/// date the price took effect.
type Listed = (&'static str, &'static str, f64, f64, f64, f64, &'static str);

/// List prices per million tokens as the providers published them, each
/// from the date it took effect (a model's release, or a price change:
/// `o3` from 2025-06-10). Cache writes: Anthropic's 5-minute write price;
/// providers that do not charge writes apart list their input price.
/// Long-context tiers (over 200k tokens of prompt) are not modelled: an
/// install that runs them sets an override.
const LISTED: &[Listed] = &[
    // Anthropic
    (
        "anthropic",
        "claude-opus-4-5",
        5.0,
        25.0,
        0.50,
        6.25,
        "2025-11-24",
    ),
    (
        "anthropic",
        "claude-opus-4-1",
        15.0,
        75.0,
        1.50,
        18.75,
        "2025-08-05",
    ),
    (
        "anthropic",
        "claude-opus-4",
        15.0,
        75.0,
        1.50,
        18.75,
        "2025-05-22",
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        3.0,
        15.0,
        0.30,
        3.75,
        "2025-09-29",
    ),
    (
        "anthropic",
        "claude-sonnet-4",
        3.0,
        15.0,
        0.30,
        3.75,
        "2025-05-22",
    ),
    (
        "anthropic",
        "claude-3-7-sonnet",
        3.0,
        15.0,
        0.30,
        3.75,
        "2025-02-24",
    ),
    (
        "anthropic",
        "claude-haiku-4-5",
        1.0,
        5.0,
        0.10,
        1.25,
        "2025-10-15",
    ),
    (
        "anthropic",
        "claude-3-5-haiku",
        0.80,
        4.0,
        0.08,
        1.0,
        "2024-10-22",
    ),
    // OpenAI
    ("openai", "gpt-5.1", 1.25, 10.0, 0.125, 1.25, "2025-11-12"),
    (
        "openai",
        "gpt-5.1-codex",
        1.25,
        10.0,
        0.125,
        1.25,
        "2025-11-13",
    ),
    (
        "openai",
        "gpt-5.1-codex-mini",
        0.25,
        2.0,
        0.025,
        0.25,
        "2025-11-13",
    ),
    ("openai", "gpt-5", 1.25, 10.0, 0.125, 1.25, "2025-08-07"),
    (
        "openai",
        "gpt-5-codex",
        1.25,
        10.0,
        0.125,
        1.25,
        "2025-09-15",
    ),
    ("openai", "gpt-5-mini", 0.25, 2.0, 0.025, 0.25, "2025-08-07"),
    (
        "openai",
        "gpt-5-nano",
        0.05,
        0.40,
        0.005,
        0.05,
        "2025-08-07",
    ),
    ("openai", "gpt-4.1", 2.0, 8.0, 0.50, 2.0, "2025-04-14"),
    (
        "openai",
        "gpt-4.1-mini",
        0.40,
        1.60,
        0.10,
        0.40,
        "2025-04-14",
    ),
    ("openai", "o3", 10.0, 40.0, 2.50, 10.0, "2025-04-16"),
    ("openai", "o3", 2.0, 8.0, 0.50, 2.0, "2025-06-10"),
    ("openai", "o4-mini", 1.10, 4.40, 0.275, 1.10, "2025-04-16"),
    ("openai", "gpt-4o", 2.50, 10.0, 1.25, 2.50, "2024-08-06"),
    // the first snapshot kept its launch price
    (
        "openai",
        "gpt-4o-2024-05-13",
        5.0,
        15.0,
        5.0,
        5.0,
        "2024-05-13",
    ),
    // Google
    (
        "google",
        "gemini-3-pro-preview",
        2.0,
        12.0,
        0.20,
        2.0,
        "2025-11-18",
    ),
    (
        "google",
        "gemini-2.5-pro",
        1.25,
        10.0,
        0.125,
        1.25,
        "2025-06-17",
    ),
    (
        "google",
        "gemini-2.5-flash",
        0.30,
        2.50,
        0.03,
        0.30,
        "2025-06-17",
    ),
    (
        "google",
        "gemini-2.5-flash-lite",
        0.10,
        0.40,
        0.01,
        0.10,
        "2025-07-22",
    ),
    // DeepSeek (V3.2 prices for both endpoints)
    (
        "deepseek",
        "deepseek-chat",
        0.28,
        0.42,
        0.028,
        0.28,
        "2025-09-29",
    ),
    (
        "deepseek",
        "deepseek-reasoner",
        0.28,
        0.42,
        0.028,
        0.28,
        "2025-09-29",
    ),
    // xAI
    ("xai", "grok-4", 3.0, 15.0, 0.75, 3.0, "2025-07-09"),
    ("xai", "grok-4-fast", 0.20, 0.50, 0.05, 0.20, "2025-09-19"),
    (
        "xai",
        "grok-code-fast-1",
        0.20,
        1.50,
        0.02,
        0.20,
        "2025-08-28",
    ),
    // Moonshot
    ("moonshot", "kimi-k2", 0.60, 2.50, 0.15, 0.60, "2025-07-11"),
    (
        "moonshot",
        "kimi-k2-thinking",
        0.60,
        2.50,
        0.15,
        0.60,
        "2025-11-06",
    ),
    // Zhipu
    ("zhipu", "glm-4.6", 0.60, 2.20, 0.11, 0.60, "2025-09-30"),
    ("zhipu", "glm-4.5", 0.60, 2.20, 0.11, 0.60, "2025-07-28"),
    ("zhipu", "glm-4.5-air", 0.20, 1.10, 0.03, 0.20, "2025-07-28"),
];

/// Model names that are another model's price, after the general rules of
/// [`canonical_model`] (dated snapshots, prefixes, `.` for `-`).
const ALIASES: &[(&str, &str)] = &[
    ("claude-opus-4-5-thinking", "claude-opus-4-5"),
    ("claude-sonnet-4-5-thinking", "claude-sonnet-4-5"),
    ("claude-3-7-sonnet-thinking", "claude-3-7-sonnet"),
    ("claude-sonnet-3-7", "claude-3-7-sonnet"),
    ("claude-haiku-3-5", "claude-3-5-haiku"),
    ("opus", "claude-opus-4-5"),
    ("sonnet", "claude-sonnet-4-5"),
    ("haiku", "claude-haiku-4-5"),
    ("gpt-5-chat-latest", "gpt-5"),
    ("gpt-5.1-chat-latest", "gpt-5.1"),
    ("kimi-k2-0711-preview", "kimi-k2"),
    ("kimi-k2-0905-preview", "kimi-k2"),
    ("kimi-k2-instruct", "kimi-k2"),
    ("deepseek-v3.2", "deepseek-chat"),
    ("deepseek-v3.2-exp", "deepseek-chat"),
    ("grok-4-0709", "grok-4"),
    ("grok-4-fast-reasoning", "grok-4-fast"),
    ("grok-4-fast-non-reasoning", "grok-4-fast"),
];

/// Agent CLIs (and hosts) as the vendor whose prices apply; an unknown one
/// is decided by the model's family (see [`vendor_of_model`]).
const PROVIDERS: &[(&str, &str)] = &[
    ("claude", "anthropic"),
    ("claude-code", "anthropic"),
    ("codex", "openai"),
    ("gemini", "google"),
    ("gemini-cli", "google"),
    ("vertex", "google"),
    ("kimi", "moonshot"),
    ("moonshotai", "moonshot"),
    ("grok", "xai"),
    ("x-ai", "xai"),
    ("z-ai", "zhipu"),
    ("zai", "zhipu"),
    ("glm", "zhipu"),
];

/// The vendor a model family belongs to, if it is one of the table's.
fn vendor_of_model(model: &str) -> Option<&'static str> {
    let families: &[(&str, &str)] = &[
        ("claude-", "anthropic"),
        ("gpt-", "openai"),
        ("o1", "openai"),
        ("o3", "openai"),
        ("o4", "openai"),
        ("gemini-", "google"),
        ("deepseek-", "deepseek"),
        ("grok-", "xai"),
        ("kimi-", "moonshot"),
        ("glm-", "zhipu"),
    ];
    families
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, vendor)| *vendor)
}

/// `model` as the price list names it: lower case, without a vendor
/// prefix (`anthropic/`, `models/`), a context tag (`[1m]`), a Vertex
/// version (`@20250929`), a dated snapshot (`-20250929`, `-2025-04-14`,
/// `-preview-06-05`) or `-latest`; Claude versions with `-` for `.`; then
/// the alias table.
pub fn canonical_model(model: &str) -> String {
    let mut m = model.trim().to_lowercase();
    if let Some((_, rest)) = m.rsplit_once('/') {
        m = rest.to_string();
    }
    if let Some(i) = m.find(['[', '@']) {
        m.truncate(i);
    }
    for suffix in ["-latest"] {
        if let Some(stripped) = m.strip_suffix(suffix) {
            m = stripped.to_string();
        }
    }
    // a dated snapshot the table prices on its own keeps its date
    if !LISTED.iter().any(|listed| listed.1 == m) {
        m = strip_date(&m);
    }
    if m.starts_with("claude-") {
        m = m.replace('.', "-");
    }
    match ALIASES.iter().find(|(alias, _)| *alias == m) {
        Some((_, to)) => to.to_string(),
        None => m,
    }
}

/// `m` without a trailing dated snapshot: `-YYYYMMDD`, `-YYYY-MM-DD`, or
/// `-preview-MM-DD` (Google's previews of a model that is now out).
fn strip_date(m: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = m.split('-').collect();
    let n = parts.len();
    if n > 1 && parts[n - 1].len() == 8 && digits(parts[n - 1]) {
        return parts[..n - 1].join("-");
    }
    if n > 3
        && parts[n - 3].len() == 4
        && digits(parts[n - 3])
        && parts[n - 2].len() == 2
        && digits(parts[n - 2])
        && parts[n - 1].len() == 2
        && digits(parts[n - 1])
    {
        return parts[..n - 3].join("-");
    }
    if n > 3
        && parts[n - 3] == "preview"
        && parts[n - 2].len() == 2
        && digits(parts[n - 2])
        && parts[n - 1].len() == 2
        && digits(parts[n - 1])
    {
        return parts[..n - 3].join("-");
    }
    m.to_string()
}

/// The (vendor, model) a usage row of `provider`/`model` is priced under.
/// A model of a known family is its vendor's, whoever ran or hosted it
/// (`opencode`, `openrouter`, Vertex: hosts list the vendor's prices);
/// otherwise a known CLI maps to its vendor, and anything else stays as
/// reported (lower case), so an operator can price it with an override.
pub fn canonical(provider: &str, model: &str) -> (String, String) {
    let model = canonical_model(model);
    let p = provider.trim().to_lowercase();
    let vendor = match vendor_of_model(&model) {
        Some(vendor) => vendor.to_string(),
        None => match PROVIDERS.iter().find(|(cli, _)| *cli == p) {
            Some((_, vendor)) => vendor.to_string(),
            None => p,
        },
    };
    (vendor, model)
}

/// USD per million tokens as micro-USD, if it is one: a number from 0 to
/// [`MAX_USD_PER_MTOK`] with at most six decimals.
pub fn micro_usd(usd_per_mtok: f64) -> Option<i64> {
    if !usd_per_mtok.is_finite() || !(0.0..=MAX_USD_PER_MTOK).contains(&usd_per_mtok) {
        return None;
    }
    let micro = usd_per_mtok * 1e6;
    let rounded = micro.round();
    // a thousandth of a micro-USD covers the binary representation of any
    // six-decimal price up to the maximum; anything further off has more
    // decimals
    ((micro - rounded).abs() < 1e-3).then_some(rounded as i64)
}

/// The highest price per million tokens an override may set.
pub const MAX_USD_PER_MTOK: f64 = 100_000.0;

/// Micro-USD as USD.
pub fn usd(micro: i64) -> f64 {
    micro as f64 / 1e6
}

/// The built-in table, oldest price of each key first.
pub fn builtin() -> Vec<PriceRow> {
    let micro = |usd: f64| (usd * 1e6).round() as i64;
    LISTED
        .iter()
        .filter_map(|&(provider, model, input, output, read, write, from)| {
            Some(PriceRow {
                provider: provider.to_string(),
                model: model.to_string(),
                price: Price {
                    input: micro(input),
                    output: micro(output),
                    cache_read: micro(read),
                    cache_write: micro(write),
                },
                effective_from: NaiveDate::parse_from_str(from, "%Y-%m-%d").ok()?,
                source: PriceSource::Builtin,
            })
        })
        .collect()
}

/// The price of canonical (`provider`, `model`) on `day`: the override
/// with the latest `effective_from` not after `day` if there is one, else
/// the built-in price likewise; `None` when neither has started by then.
/// An override wins from its date on; the days before it keep whatever
/// applied then.
pub fn price_on<'a>(
    rows: &'a [PriceRow],
    provider: &str,
    model: &str,
    day: NaiveDate,
) -> Option<&'a PriceRow> {
    let latest = |source: PriceSource| {
        rows.iter()
            .filter(|r| {
                r.source == source
                    && r.provider == provider
                    && r.model == model
                    && r.effective_from <= day
            })
            .max_by_key(|r| r.effective_from)
    };
    latest(PriceSource::Override).or_else(|| latest(PriceSource::Builtin))
}

/// [`PriceBook::price_for`]'s answers by day, provider and model.
type Seen = std::collections::HashMap<
    NaiveDate,
    std::collections::HashMap<String, std::collections::HashMap<String, Option<Price>>>,
>;

/// A workspace's overrides with the built-in table: what usage is costed
/// with.
pub struct PriceBook {
    rows: Vec<PriceRow>,
    /// [`PriceBook::price_for`]'s answers: a page prices thousands of
    /// rows of a few (provider, model, day) keys.
    /// By day, provider and model, so a lookup allocates nothing.
    seen: std::cell::RefCell<Seen>,
}

impl PriceBook {
    pub fn new(mut overrides: Vec<PriceRow>) -> PriceBook {
        overrides.extend(builtin());
        PriceBook {
            rows: overrides,
            seen: Default::default(),
        }
    }

    /// Every price, overrides first.
    pub fn rows(&self) -> &[PriceRow] {
        &self.rows
    }

    /// The price that applies on `day` to usage reported as
    /// `provider`/`model` (see [`canonical`] and [`price_on`]).
    pub fn row_for(&self, provider: &str, model: &str, day: NaiveDate) -> Option<&PriceRow> {
        let (p, m) = canonical(provider, model);
        price_on(&self.rows, &p, &m, day)
    }

    /// The days in `after` (exclusive) ..= `last` on which some price
    /// takes effect, ascending: between two of them every price holds.
    pub fn changes(&self, after: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
        let days: std::collections::BTreeSet<NaiveDate> = self
            .rows
            .iter()
            .map(|r| r.effective_from)
            .filter(|d| *d > after && *d <= last)
            .collect();
        days.into_iter().collect()
    }

    /// [`PriceBook::row_for`]'s price, looked up once per key.
    pub fn price_for(&self, provider: &str, model: &str, day: NaiveDate) -> Option<Price> {
        let known = self
            .seen
            .borrow()
            .get(&day)
            .and_then(|p| p.get(provider))
            .and_then(|m| m.get(model))
            .copied();
        if let Some(found) = known {
            return found;
        }
        let found = self.row_for(provider, model, day).map(|r| r.price);
        self.seen
            .borrow_mut()
            .entry(day)
            .or_default()
            .entry(provider.to_string())
            .or_default()
            .insert(model.to_string(), found);
        found
    }
}

/// Token counts of one usage row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

impl Tokens {
    pub fn total(&self) -> i64 {
        [self.input, self.output, self.cache_read, self.cache_write]
            .iter()
            .fold(0i64, |a, b| a.saturating_add((*b).max(0)))
    }
}

/// How a usage row's cost was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The provider's own figure, as the daemon reported it.
    Reported,
    /// Tokens × the price that applied on the day.
    Estimated,
    /// No price applied: its tokens are `uncosted_tokens`.
    Unpriced,
}

/// The cost of one usage row in ticks (1e-10 USD), and how it was found.
/// A cost the provider reported wins over any estimate.
pub fn cost_ticks(
    tokens: Tokens,
    reported: Option<i64>,
    price: Option<&Price>,
) -> (i64, CostSource) {
    if let Some(ticks) = reported.filter(|t| *t > 0) {
        return (ticks, CostSource::Reported);
    }
    let Some(p) = price else {
        return (0, CostSource::Unpriced);
    };
    // tokens × micro-USD per Mtok = 1e-12 USD = 0.01 tick
    let hundredths: i128 = [
        (tokens.input, p.input),
        (tokens.output, p.output),
        (tokens.cache_read, p.cache_read),
        (tokens.cache_write, p.cache_write),
    ]
    .iter()
    .map(|(n, price)| i128::from((*n).max(0)) * i128::from(*price))
    .sum();
    let ticks = (hundredths + 50) / 100;
    (
        i64::try_from(ticks).unwrap_or(i64::MAX),
        CostSource::Estimated,
    )
}

/// Ticks (1e-10 USD) as USD.
pub fn ticks_usd(ticks: i64) -> f64 {
    ticks as f64 / 1e10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendors the table must cover.
    const VENDORS: &[&str] = &[
        "anthropic",
        "openai",
        "google",
        "deepseek",
        "xai",
        "moonshot",
        "zhipu",
    ];

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn names_as_the_daemons_report_them_are_priced_under_the_family() {
        for (provider, model, want) in [
            (
                "claude",
                "claude-sonnet-4-5-20250929",
                ("anthropic", "claude-sonnet-4-5"),
            ),
            (
                "claude",
                "claude-opus-4-5-20251101",
                ("anthropic", "claude-opus-4-5"),
            ),
            (
                "claude",
                "claude-sonnet-4-5[1m]",
                ("anthropic", "claude-sonnet-4-5"),
            ),
            (
                "opencode",
                "anthropic/claude-sonnet-4.5",
                ("anthropic", "claude-sonnet-4-5"),
            ),
            (
                "vertex",
                "claude-sonnet-4-5@20250929",
                ("anthropic", "claude-sonnet-4-5"),
            ),
            (
                "claude",
                "a-model-of-tomorrow",
                ("anthropic", "a-model-of-tomorrow"),
            ),
            ("codex", "gpt-5-codex", ("openai", "gpt-5-codex")),
            ("codex", "gpt-4.1-2025-04-14", ("openai", "gpt-4.1")),
            ("codex", "gpt-4o-2024-08-06", ("openai", "gpt-4o")),
            (
                "codex",
                "gpt-4o-2024-05-13",
                ("openai", "gpt-4o-2024-05-13"),
            ),
            ("codex", "o4-mini-2025-04-16", ("openai", "o4-mini")),
            (
                "claude",
                "claude-opus-4-1-20250805",
                ("anthropic", "claude-opus-4-1"),
            ),
            ("codex", "GPT-5.1-Codex", ("openai", "gpt-5.1-codex")),
            (
                "gemini",
                "models/gemini-2.5-pro-preview-06-05",
                ("google", "gemini-2.5-pro"),
            ),
            (
                "gemini",
                "gemini-3-pro-preview",
                ("google", "gemini-3-pro-preview"),
            ),
            (
                "openrouter",
                "moonshotai/kimi-k2-0905-preview",
                ("moonshot", "kimi-k2"),
            ),
            ("opencode", "deepseek-chat", ("deepseek", "deepseek-chat")),
            ("opencode", "z-ai/glm-4.6", ("zhipu", "glm-4.6")),
            ("hermes", "grok-code-fast-1", ("xai", "grok-code-fast-1")),
            ("Ollama", "Llama3:70B", ("ollama", "llama3:70b")),
        ] {
            let (p, m) = canonical(provider, model);
            assert_eq!((p.as_str(), m.as_str()), want, "{provider} {model}");
        }
    }

    #[test]
    fn every_builtin_price_is_reachable_and_dated() {
        let rows = builtin();
        assert_eq!(rows.len(), LISTED.len());
        for row in &rows {
            assert_eq!(
                canonical(&row.provider, &row.model),
                (row.provider.clone(), row.model.clone())
            );
            let found = price_on(&rows, &row.provider, &row.model, row.effective_from);
            assert_eq!(found, Some(row), "{} {}", row.provider, row.model);
        }
        for vendor in VENDORS {
            assert!(rows.iter().any(|r| r.provider == *vendor), "{vendor}");
        }
    }

    #[test]
    fn a_later_price_applies_from_its_date_and_an_override_beats_the_table() {
        let mut rows = builtin();
        let o3 = |d: &str| price_on(&rows, "openai", "o3", day(d)).map(|r| r.price.input);
        assert_eq!(o3("2025-04-15"), None);
        assert_eq!(o3("2025-06-09"), Some(10_000_000));
        assert_eq!(o3("2025-06-10"), Some(2_000_000));
        rows.push(PriceRow {
            provider: "openai".into(),
            model: "o3".into(),
            price: Price {
                input: 1_000_000,
                output: 0,
                cache_read: 0,
                cache_write: 0,
            },
            effective_from: day("2025-12-01"),
            source: PriceSource::Override,
        });
        let o3 = |d: &str| price_on(&rows, "openai", "o3", day(d)).map(|r| r.price.input);
        assert_eq!(o3("2025-11-30"), Some(2_000_000));
        assert_eq!(o3("2025-12-01"), Some(1_000_000));
    }

    #[test]
    fn costs_are_exact_and_a_reported_cost_wins() {
        let sonnet = Price {
            input: 3_000_000,
            output: 15_000_000,
            cache_read: 300_000,
            cache_write: 3_750_000,
        };
        let tokens = Tokens {
            input: 1_000_000,
            output: 100_000,
            cache_read: 2_000_000,
            cache_write: 10,
        };
        // $3 + $1.50 + $0.60 + 10 × $3.75e-6
        let want = 30_000_000_000 + 15_000_000_000 + 6_000_000_000 + 375_000;
        assert_eq!(
            cost_ticks(tokens, None, Some(&sonnet)),
            (want, CostSource::Estimated)
        );
        assert_eq!(
            cost_ticks(tokens, Some(7), Some(&sonnet)),
            (7, CostSource::Reported)
        );
        assert_eq!(cost_ticks(tokens, None, None), (0, CostSource::Unpriced));
        // at $0.000001/Mtok a token costs 0.01 tick: 49 round down, 50 up
        let cheapest = Price {
            input: 1,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        };
        let n = |input| Tokens {
            input,
            ..Tokens::default()
        };
        assert_eq!(cost_ticks(n(49), None, Some(&cheapest)).0, 0);
        assert_eq!(cost_ticks(n(50), None, Some(&cheapest)).0, 1);
        let nano = Price {
            input: 50_000,
            output: 0,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(cost_ticks(n(1), None, Some(&nano)).0, 500);
        let max = Tokens {
            input: i64::MAX,
            output: i64::MAX,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(cost_ticks(max, None, Some(&sonnet)).0, i64::MAX);
    }

    #[test]
    fn prices_are_micro_usd_or_refused() {
        assert_eq!(micro_usd(3.0), Some(3_000_000));
        assert_eq!(micro_usd(0.3), Some(300_000));
        assert_eq!(micro_usd(0.000001), Some(1));
        assert_eq!(micro_usd(0.0000001), None);
        assert_eq!(micro_usd(-1.0), None);
        assert_eq!(micro_usd(f64::NAN), None);
        assert_eq!(micro_usd(100_001.0), None);
        assert_eq!(micro_usd(3.0000004), None);
        assert_eq!(micro_usd(1.23456789), None);
        assert_eq!(micro_usd(99_999.999999), Some(99_999_999_999));
        assert_eq!(micro_usd(1.234567), Some(1_234_567));
    }
}
