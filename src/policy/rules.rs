//! CEL rules (`rules:` in policy.yaml): attribute-based conditions with an effect.
//!
//! Every rule is compiled when the policy loads; a rule that does not parse, names an unknown
//! variable, request field or function, or makes a known type mistake is refused with its name,
//! so a broken rule never reaches a request.
//!
//! # Semantics
//! Rules run after the role's capabilities, key scopes and content filters, in file order; the
//! **first rule whose `when` is true decides** and later rules are not evaluated:
//! - `deny`: 403 `rule_denied` with the rule's `message` (or a default naming the rule);
//! - `require_approval`: the request waits for an approver (the caller builds the approval);
//! - `allow`: no later rule is evaluated (quota still applies; capabilities and content filters
//!   have already passed, an `allow` rule cannot lift them).
//!
//! When no rule matches the request goes on. A rule whose evaluation fails (a type error, a
//! missing key, a non-boolean result…) refuses the request with 403 `rule_error`: rules fail
//! closed.
//!
//! # Variables
//! - `user`: `subject`, `role`, `email` (`""` when unknown), `groups` (list), `kind`
//!   (`user` | `service_account`), `auth` (`api_key` | `jwt` | `session`), `key_id` (`""` when
//!   none), `mfa` (bool: multi-factor authentication completed), `attributes` (map of the raw
//!   attribute strings, only those the principal has) and every attribute by name
//!   (`user.department`). An attribute whose value is a canonical
//!   integer (`0`, `-3`, `42`: no sign `+`, no leading zeros, fits 64 bits) is an `int`, any
//!   other value a `string`; an attribute a rule names that the principal lacks is `null`.
//!   Standard fields win over attributes of the same name (those stay in `user.attributes`).
//! - `request`: see [`REQUEST_FIELDS`]; absent strings are `""`, absent numbers `0`, absent
//!   lists `[]`.
//! - `now`: the decision time, a UTC timestamp (`now.getHours("Europe/Paris") < 8`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Program, Value};
use chrono::{DateTime, Utc};

use crate::domain::{Action, ApiKind, Denial, DenyKind, Permission, Principal};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Deny,
    RequireApproval,
    Allow,
}

impl Effect {
    /// The policy.yaml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Deny => "deny",
            Effect::RequireApproval => "require_approval",
            Effect::Allow => "allow",
        }
    }
}

/// One rule as written in policy.yaml, before compilation.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    /// The CEL condition.
    pub when: String,
    pub effect: Effect,
    /// Shown to the caller on `deny` and `require_approval`.
    pub message: Option<String>,
}

/// A rule that cannot be compiled; `index` is its position in `rules:`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rule `{rule}`: {problem}")]
pub struct RuleError {
    pub index: usize,
    pub rule: String,
    pub problem: String,
    pub fix: Option<String>,
}

/// The result of evaluating the rules against one request.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome {
    /// No rule matched: the request goes on.
    NoMatch,
    /// An `allow` rule matched: later rules are skipped, the request goes on.
    Allow { rule: String },
    /// A `deny` rule matched, or a rule could not be evaluated.
    Deny(Denial),
    /// A `require_approval` rule matched.
    RequireApproval { rule: String, message: String },
}

/// What the rules see of one request.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    pub principal: &'a Principal,
    pub action: &'a Action,
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The permission of the route that matched.
    pub permission: Permission,
    /// PII categories the content scan found (`ContentFindings::pii`).
    pub pii: &'a [&'static str],
    pub now: DateTime<Utc>,
}

/// Fields of `request` (all always present).
pub const REQUEST_FIELDS: [&str; 20] = [
    "method",          // string, upper case
    "path",            // string, without the query
    "permission",      // string, the route's permission
    "permissions",     // list of strings: every permission the request needs
    "action",          // string, e.g. text-to-image, llm-chat
    "api",             // string: image | llm | other | ""
    "preset",          // string, "" when none
    "loras",           // list of strings
    "image_number",    // int, 0 when not said
    "model",           // string, "" when none
    "refiner_model",   // string, "" when none
    "width",           // int, 0 when unknown
    "height",          // int, 0 when unknown
    "upscale",         // bool
    "max_tokens",      // int, 0 when not said
    "prompt",          // string, "" when none
    "negative_prompt", // string, "" when none
    "prompts",         // list of strings: every text the model reads as a prompt
    "contains_pii",    // bool: a PII detector matched
    "pii",             // list of strings: the PII categories found
];

/// Standard fields of `user`; any other name is an attribute.
pub const USER_FIELDS: [&str; 9] = [
    "subject",
    "role",
    "email",
    "groups",
    "kind",
    "auth",
    "key_id",
    "mfa",
    "attributes",
];

/// Identifiers CEL resolves to types; not variables.
const TYPE_IDENTS: [&str; 13] = [
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
    "duration",
    "dyn",
];

// `Reads` keeps one bit per field.
const _: () = assert!(REQUEST_FIELDS.len() <= 32 && USER_FIELDS.len() <= 16);

const MAX_WHEN_CHARS: usize = 4096;
const MAX_MESSAGE_CHARS: usize = 512;

/// One compiled rule.
pub struct Rule {
    pub name: String,
    pub effect: Effect,
    pub message: Option<String>,
    program: Program,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("effect", &self.effect)
            .finish_non_exhaustive()
    }
}

/// The compiled `rules:` of a policy, in file order.
pub struct RuleSet {
    env: Arc<Env>,
    rules: Vec<Rule>,
    /// Attribute names the rules select on `user`; absent ones are bound to `null`.
    attribute_names: BTreeSet<String>,
    uses_pii: bool,
    /// The fields of `user` and `request` the rules read: only those are built per request.
    reads: Reads,
}

/// What the rules of a set read of `user` and `request`, found when they compile.
///
/// A rule that selects fields by name (`request.prompt`, `has(user.attributes.x)`) reads just
/// those; one that uses the variable itself (`request["prompt"]`, `"x" in user`, `size(user)`,
/// a comprehension over it) reads all of it. The values bound for a request hold what is read
/// and nothing else, so a rule sees exactly what it would with everything bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reads {
    /// Bit `i`: `request.{REQUEST_FIELDS[i]}`.
    request: u32,
    /// Bit `i`: `user.{USER_FIELDS[i]}`.
    user: u16,
    whole_request: bool,
    whole_user: bool,
}

impl Reads {
    fn request_field(&self, index: usize) -> bool {
        self.whole_request || self.request & (1 << index) != 0
    }

    fn user_field(&self, index: usize) -> bool {
        self.whole_user || self.user & (1 << index) != 0
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            env: Arc::new(Env::stdlib()),
            rules: Vec::new(),
            attribute_names: BTreeSet::new(),
            uses_pii: false,
            reads: Reads::default(),
        }
    }
}

impl RuleSet {
    /// Compiles and checks the rules; the first broken one is reported.
    pub fn compile(specs: Vec<RuleSpec>) -> Result<RuleSet, RuleError> {
        let env = Arc::new(Env::stdlib());
        let mut set = RuleSet {
            env: Arc::clone(&env),
            ..RuleSet::default()
        };
        let mut names = BTreeSet::new();
        let mut known_functions = HashMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let fail = |problem: String, fix: Option<&str>| RuleError {
                index,
                rule: spec.name.clone(),
                problem,
                fix: fix.map(str::to_string),
            };
            if !names.insert(spec.name.clone()) {
                return Err(fail(
                    "the name is used by an earlier rule".into(),
                    Some("give every rule its own name"),
                ));
            }
            if spec.when.trim().is_empty() {
                return Err(fail(
                    "`when` is empty".into(),
                    Some("write a CEL condition, e.g. `true`"),
                ));
            }
            if spec.when.chars().count() > MAX_WHEN_CHARS {
                return Err(fail(
                    format!("`when` is longer than {MAX_WHEN_CHARS} characters"),
                    None,
                ));
            }
            if let Some(m) = &spec.message
                && (m.chars().count() > MAX_MESSAGE_CHARS || m.chars().any(char::is_control))
            {
                return Err(fail(
                    format!("`message` must be one line of at most {MAX_MESSAGE_CHARS} characters"),
                    None,
                ));
            }
            let program = env.compile(&spec.when).map_err(|e| {
                let first = e.errors.first();
                let problem = match first {
                    Some(p) => format!(
                        "`when` does not parse: {} (line {}, column {} of the expression)",
                        p.msg,
                        p.pos.0.max(1),
                        p.pos.1 + 1
                    ),
                    None => "`when` does not parse".to_string(),
                };
                fail(problem, Some("see https://cel.dev for the CEL syntax"))
            })?;
            let mut checker = Checker {
                env: &env,
                bound: Vec::new(),
                attributes: &mut set.attribute_names,
                reads: &mut set.reads,
                uses_pii: false,
                known_functions: &mut known_functions,
            };
            checker
                .walk(program.expression())
                .map_err(|(problem, fix)| fail(problem, fix.as_deref()))?;
            set.uses_pii |= checker.uses_pii;
            set.rules.push(Rule {
                name: spec.name,
                effect: spec.effect,
                message: spec.message,
                program,
            });
        }
        Ok(set)
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when a rule reads `request.contains_pii` or `request.pii`.
    pub fn uses_pii(&self) -> bool {
        self.uses_pii
    }

    /// Evaluates the rules in order; the first match decides.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> RuleOutcome {
        if self.rules.is_empty() {
            return RuleOutcome::NoMatch;
        }
        // Built once for all the rules, with only what they read, borrowing the input's text
        // rather than copying it (a prompt can be many kilobytes).
        let vars = Variables {
            user: self.user_val(input.principal),
            request: request_val(input, &self.reads),
            now: CelTimestamp::from(input.now.fixed_offset()),
        };
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        ctx.set_variable_resolver(&vars);
        for rule in &self.rules {
            let matched = match rule.program.execute(&ctx) {
                Ok(Value::Bool(b)) => b,
                Ok(other) => {
                    tracing::warn!(
                        rule = %rule.name,
                        result = %other.type_of(),
                        "rule returned a non-boolean; refusing (fail closed)"
                    );
                    return RuleOutcome::Deny(rule_error(&rule.name));
                }
                Err(e) => {
                    // Only the kind of error: its values could hold prompt text.
                    tracing::warn!(
                        rule = %rule.name,
                        error = %describe(&e),
                        "rule evaluation failed; refusing (fail closed)"
                    );
                    return RuleOutcome::Deny(rule_error(&rule.name));
                }
            };
            if !matched {
                continue;
            }
            return match rule.effect {
                Effect::Allow => RuleOutcome::Allow {
                    rule: rule.name.clone(),
                },
                Effect::Deny => RuleOutcome::Deny(
                    Denial::new(
                        DenyKind::Forbidden,
                        "rule_denied",
                        rule.message
                            .clone()
                            .unwrap_or_else(|| format!("refused by policy rule `{}`", rule.name)),
                    )
                    .with_rule(format!("rules.{}", rule.name)),
                ),
                Effect::RequireApproval => RuleOutcome::RequireApproval {
                    rule: rule.name.clone(),
                    message: rule.message.clone().unwrap_or_else(|| {
                        format!(
                            "policy rule `{}` requires an approver's decision",
                            rule.name
                        )
                    }),
                },
            };
        }
        RuleOutcome::NoMatch
    }

    /// `user` as the rules read it: the fields they name, the attributes they name (`null`
    /// when the principal lacks one), or everything when a rule uses `user` itself.
    fn user_val<'a>(&'a self, p: &'a Principal) -> Box<dyn Val + 'a> {
        let reads = &self.reads;
        let mut user: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
        if reads.whole_user {
            for (k, v) in &p.attributes {
                user.insert(k.as_str().into(), attribute_val(v));
            }
        }
        for name in &self.attribute_names {
            let value = match p.attributes.get(name) {
                Some(v) => attribute_val(v),
                None => Box::new(CelNull),
            };
            user.insert(name.as_str().into(), value);
        }
        // Standard fields win over attributes of the same name.
        for (index, field) in USER_FIELDS.iter().enumerate() {
            if !reads.user_field(index) {
                continue;
            }
            let value: Box<dyn Val + 'a> = match *field {
                "subject" => text(&p.subject),
                "role" => text(&p.role),
                "email" => text(p.email.as_deref().unwrap_or("")),
                "groups" => string_list(&p.groups),
                "kind" => text(p.kind.as_str()),
                "auth" => text(p.auth.as_str()),
                "key_id" => text(p.key_id.as_deref().unwrap_or("")),
                "mfa" => Box::new(CelBool::from(p.mfa)),
                "attributes" => Box::new(CelMap::from(
                    p.attributes
                        .iter()
                        .map(|(k, v)| (CelMapKey::from(k.as_str()), text(v)))
                        .collect::<HashMap<_, _>>(),
                )),
                other => unreachable!("USER_FIELDS has no `{other}`"),
            };
            user.insert((*field).into(), value);
        }
        Box::new(CelMap::from(user))
    }
}

/// The three variables of one evaluation, handed to CEL by reference.
#[derive(Debug)]
struct Variables<'a> {
    user: Box<dyn Val + 'a>,
    request: Box<dyn Val + 'a>,
    now: CelTimestamp,
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: &'b dyn Val = match variable {
            "user" => self.user.as_ref(),
            "request" => self.request.as_ref(),
            "now" => &self.now,
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
    }
}

/// The typed value of one attribute: canonical integers are ints, anything else a string.
pub fn attribute_value(raw: &str) -> Value {
    match canonical_int(raw) {
        Some(i) => Value::Int(i),
        None => Value::from(raw),
    }
}

/// [`attribute_value`] as the value bound for a rule, borrowing `raw`.
fn attribute_val(raw: &str) -> Box<dyn Val + '_> {
    match canonical_int(raw) {
        Some(i) => Box::new(CelInt::from(i)),
        None => text(raw),
    }
}

/// `raw` as an integer when it is written canonically: an optional `-`, then `0` or digits
/// without a leading zero, within `i64`.
fn canonical_int(raw: &str) -> Option<i64> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && raw != "-0";
    if canonical { raw.parse().ok() } else { None }
}

fn text(s: &str) -> Box<dyn Val + '_> {
    Box::new(CelString::from(s))
}

fn string_list<S: AsRef<str>>(items: &[S]) -> Box<dyn Val + '_> {
    Box::new(CelList::from(
        items.iter().map(|s| text(s.as_ref())).collect::<Vec<_>>(),
    ))
}

/// `request` as the rules read it: the fields they name, or all of them when a rule uses
/// `request` itself.
fn request_val<'a>(input: &RuleInput<'a>, reads: &Reads) -> Box<dyn Val + 'a> {
    let a = input.action;
    let opt = |s: &'a Option<String>| text(s.as_deref().unwrap_or(""));
    let int = |n: Option<u64>| -> Box<dyn Val + 'a> {
        Box::new(CelInt::from(
            n.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        ))
    };
    let mut r: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
    for (index, field) in REQUEST_FIELDS.iter().enumerate() {
        if !reads.request_field(index) {
            continue;
        }
        let value: Box<dyn Val + 'a> = match *field {
            "method" => text(input.method),
            "path" => text(input.path),
            "permission" => text(input.permission.as_str()),
            "permissions" => Box::new(CelList::from(
                a.permissions
                    .iter()
                    .map(|p| text(p.as_str()))
                    .collect::<Vec<_>>(),
            )),
            "action" => text(&a.name),
            "api" => text(match a.api {
                Some(ApiKind::Image) => "image",
                Some(ApiKind::Llm) => "llm",
                Some(ApiKind::Other) => "other",
                None => "",
            }),
            "preset" => opt(&a.preset),
            "loras" => string_list(&a.loras),
            "image_number" => int(a.image_number.map(u64::from)),
            "model" => opt(&a.model),
            "refiner_model" => opt(&a.refiner_model),
            "width" => int(a.width.map(u64::from)),
            "height" => int(a.height.map(u64::from)),
            "upscale" => Box::new(CelBool::from(a.upscale)),
            "max_tokens" => int(a.max_tokens),
            "prompt" => opt(&a.prompt),
            "negative_prompt" => opt(&a.negative_prompt),
            "prompts" => string_list(&a.prompts),
            "contains_pii" => Box::new(CelBool::from(!input.pii.is_empty())),
            "pii" => string_list(input.pii),
            other => unreachable!("REQUEST_FIELDS has no `{other}`"),
        };
        r.insert((*field).into(), value);
    }
    Box::new(CelMap::from(r))
}

fn rule_error(name: &str) -> Denial {
    Denial::new(
        DenyKind::Forbidden,
        "rule_error",
        format!("policy rule `{name}` could not be evaluated for this request, so it is refused"),
    )
    .with_rule(format!("rules.{name}"))
}

/// A description of an evaluation error that never contains request values.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchOverload(o) => o.to_string(),
        ExecutionError::NoSuchKey(k) => format!("no such key `{k}`"),
        ExecutionError::UndeclaredReference(n) => format!("undeclared reference `{n}`"),
        ExecutionError::FunctionError { function, .. } => format!("function `{function}` failed"),
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got {got}, want {want}")
        }
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} and {} cannot be compared", a.type_of(), b.type_of())
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            format!(
                "operator `{op}` does not apply to {} and {}",
                a.type_of(),
                b.type_of()
            )
        }
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "division by zero".into()
        }
        ExecutionError::Overflow(op, _, _) => format!("overflow in `{op}`"),
        ExecutionError::IndexOutOfBounds(_) => "index out of bounds".into(),
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("{actual} arguments where {expected} are expected")
        }
        _ => "evaluation error".into(),
    }
}

/// Checks a parsed rule for mistakes that would make it fail on every request.
struct Checker<'a> {
    env: &'a Arc<Env>,
    /// Comprehension variables in scope.
    bound: Vec<String>,
    attributes: &'a mut BTreeSet<String>,
    reads: &'a mut Reads,
    uses_pii: bool,
    known_functions: &'a mut HashMap<String, bool>,
}

type Problem = (String, Option<String>);

impl Checker<'_> {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    fn walk(&mut self, e: &IdedExpr) -> Result<(), Problem> {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(()),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && !self.is_bound(root)
                {
                    return self.root_field(root, &s.field, s.test);
                }
                self.walk(&s.operand)
            }
            Expr::Call(c) => {
                self.lint_comparison(&c.func_name, &c.args)?;
                match c.target.as_deref() {
                    // `optional.of(…)`: a namespaced function, not a variable.
                    Some(IdedExpr {
                        expr: Expr::Ident(ns),
                        ..
                    }) if !self.is_bound(ns) && !is_root(ns) => {
                        self.function(&format!("{ns}.{}()", c.func_name), &c.func_name)?;
                    }
                    Some(target) => {
                        self.function(&format!("null.{}()", c.func_name), &c.func_name)?;
                        self.walk(target)?;
                    }
                    None => self.function(&format!("{}()", c.func_name), &c.func_name)?,
                }
                c.args.iter().try_for_each(|a| self.walk(a))
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range)?;
                self.walk(&c.accu_init)?;
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                self.bound.push(c.accu_var.clone());
                let r = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|x| self.walk(x));
                self.bound.truncate(before);
                r
            }
            Expr::List(l) => l.elements.iter().try_for_each(|x| self.walk(x)),
            Expr::Map(m) => m.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => {
                    self.walk(&me.key)?;
                    self.walk(&me.value)
                }
                EntryExpr::StructField(f) => self.walk(&f.value),
            }),
            Expr::Struct(s) => s.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => {
                    self.walk(&me.key)?;
                    self.walk(&me.value)
                }
                EntryExpr::StructField(f) => self.walk(&f.value),
            }),
        }
    }

    fn ident(&mut self, name: &str) -> Result<(), Problem> {
        if !self.is_bound(name) {
            // The variable itself, not one of its fields: the rule reads all of it.
            match name {
                "request" => self.reads.whole_request = true,
                "user" => self.reads.whole_user = true,
                _ => {}
            }
        }
        if is_root(name)
            || self.is_bound(name)
            || name.starts_with('@')
            || TYPE_IDENTS.contains(&name)
        {
            return Ok(());
        }
        Err((
            format!("unknown variable `{name}`"),
            Some("rules see `user`, `request` and `now`".into()),
        ))
    }

    fn root_field(&mut self, root: &str, field: &str, test: bool) -> Result<(), Problem> {
        match root {
            "request" => {
                let Some(index) = REQUEST_FIELDS.iter().position(|f| *f == field) else {
                    return Err((
                        format!("unknown field `request.{field}`"),
                        Some(format!("use one of: {}", REQUEST_FIELDS.join(", "))),
                    ));
                };
                self.reads.request |= 1 << index;
                if field == "contains_pii" || field == "pii" {
                    self.uses_pii = true;
                }
                Ok(())
            }
            "user" => {
                if let Some(index) = USER_FIELDS.iter().position(|f| *f == field) {
                    self.reads.user |= 1 << index;
                    return Ok(());
                }
                if test {
                    return Err((
                        format!("`has(user.{field})` is always true: a missing attribute is null"),
                        Some(format!("test presence with `has(user.attributes.{field})`")),
                    ));
                }
                self.attributes.insert(field.to_string());
                Ok(())
            }
            "now" => Err((
                format!("`now.{field}`: `now` is a timestamp and has no fields"),
                Some("use its functions, e.g. `now.getHours(\"UTC\")`".into()),
            )),
            other => self.ident(other),
        }
    }

    /// Refuses a call to a function CEL does not know, found by calling it with no
    /// arguments: a known one fails on its arguments, an unknown one is undeclared.
    fn function(&mut self, probe: &str, name: &str) -> Result<(), Problem> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with('_') {
            return Ok(()); // operators: `_==_`, `@in`, `!_`, …
        }
        let known = *self
            .known_functions
            .entry(probe.to_string())
            .or_insert_with(|| match self.env.compile(probe) {
                Ok(p) => !matches!(
                    p.execute(&Context::with_env(Arc::clone(self.env))),
                    Err(ExecutionError::UndeclaredReference(_))
                ),
                Err(_) => true,
            });
        if known {
            Ok(())
        } else {
            Err((
                format!("unknown function `{name}`"),
                Some(
                    "use a CEL standard function (size, contains, startsWith, matches, int, …)"
                        .into(),
                ),
            ))
        }
    }

    /// `user.cost_center == "1234"` would never be true: the attribute is the int 1234.
    fn lint_comparison(&self, func: &str, args: &[IdedExpr]) -> Result<(), Problem> {
        let pairs: Vec<(&IdedExpr, &IdedExpr)> = match (func, args) {
            ("_==_" | "_!=_", [a, b]) => vec![(a, b), (b, a)],
            (
                "@in",
                [
                    a,
                    IdedExpr {
                        expr: Expr::List(l),
                        ..
                    },
                ],
            ) => l.elements.iter().map(|x| (a, x)).collect(),
            _ => return Ok(()),
        };
        for (side, other) in pairs {
            let Some(attr) = self.user_attribute(side) else {
                continue;
            };
            if let Expr::Literal(LiteralValue::String(s)) = &other.expr {
                let s = s.inner();
                if canonical_int(s).is_some() {
                    return Err((
                        format!(
                            "compares user.{attr} with the string \"{s}\", but an attribute written as an integer is an int, so this is never equal"
                        ),
                        Some(format!(
                            "compare with the number {s}, or with the raw string: user.attributes.{attr} == \"{s}\""
                        )),
                    ));
                }
            }
        }
        Ok(())
    }

    fn user_attribute<'e>(&self, e: &'e IdedExpr) -> Option<&'e str> {
        let Expr::Select(s) = &e.expr else {
            return None;
        };
        match &s.operand.expr {
            Expr::Ident(root)
                if root == "user"
                    && !self.is_bound(root)
                    && !USER_FIELDS.contains(&s.field.as_str()) =>
            {
                Some(&s.field)
            }
            _ => None,
        }
    }
}

fn is_root(name: &str) -> bool {
    matches!(name, "user" | "request" | "now")
}

#[cfg(test)]
mod tests;
