//! List builtins. `map`, `genList` and friends stay lazy in their elements;
//! `filter`, `foldl'`, `sort` and `partition` force what they must, as in Nix.

use std::rc::Rc;

use indexmap::IndexMap;
use rustc_hash::FxHashSet;

use super::{attrs_of, call1, call2, expect_bool, function, int, list, string};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source_map::Span;
use crate::string::NixStr;
use crate::value::{Attrs, Symbol, Thunk, Value};

pub fn map(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let items = list(ev, &args[1], span)?;
    Ok(Value::list(items.iter().map(|x| Thunk::apply(args[0].clone(), x.clone())).collect()))
}

pub fn filter(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let mut out = Vec::new();
    for x in items.iter() {
        if pred(ev, &f, x, span)? {
            out.push(x.clone());
        }
    }
    if out.len() == items.len() {
        return Ok(Value::List(items));
    }
    Ok(Value::list(out))
}

fn pred(ev: &mut Evaluator, f: &Value, x: &Thunk, span: Span) -> EvalResult<bool> {
    let result = call1(ev, f, x.clone(), span)?;
    expect_bool(result, span)
}

pub fn all(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    for x in items.iter() {
        if !pred(ev, &f, x, span)? {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

pub fn any(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    for x in items.iter() {
        if pred(ev, &f, x, span)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub fn length(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(list(ev, &args[0], span)?.len() as i64))
}

pub fn head(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let items = list(ev, &args[0], span)?;
    match items.first() {
        Some(t) => ev.force(t),
        None => Err(EvalError::at(ErrorKind::Eval, "list index 0 is out of bounds", span)),
    }
}

pub fn tail(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let items = list(ev, &args[0], span)?;
    if items.is_empty() {
        return Err(EvalError::at(ErrorKind::Eval, "'tail' called on an empty list", span));
    }
    Ok(Value::list(items[1..].to_vec()))
}

pub fn elem_at(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let items = list(ev, &args[0], span)?;
    let n = int(ev, &args[1], span)?;
    match usize::try_from(n).ok().and_then(|i| items.get(i)) {
        Some(t) => ev.force(t),
        None => Err(EvalError::at(ErrorKind::Eval, format!("list index {n} is out of bounds"), span)),
    }
}

pub fn elem(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let x = ev.force(&args[0])?;
    let items = list(ev, &args[1], span)?;
    for t in items.iter() {
        let y = ev.force(t)?;
        if ev.values_equal(&x, &y, span)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub fn concat_lists(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let lists = list(ev, &args[0], span)?;
    let mut out = Vec::new();
    for l in lists.iter() {
        out.extend_from_slice(&list(ev, l, span)?);
    }
    Ok(Value::list(out))
}

pub fn concat_map(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let mut out = Vec::new();
    for x in items.iter() {
        let part = call1(ev, &f, x.clone(), span)?;
        out.extend_from_slice(&ev.expect_list(part, span)?);
    }
    Ok(Value::list(out))
}

pub fn foldl(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[2], span)?;
    let mut acc = args[1].clone();
    for x in items.iter() {
        acc = Thunk::Ready(call2(ev, &f, acc, x.clone(), span)?);
    }
    ev.force(&acc)
}

pub fn gen_list(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let n = int(ev, &args[1], span)?;
    if n < 0 {
        return Err(EvalError::at(ErrorKind::Eval, format!("cannot create list of size {n}"), span));
    }
    Ok(Value::list((0..n).map(|i| Thunk::apply(args[0].clone(), Value::Int(i).into())).collect()))
}

/// `builtins.sort`: a stable merge sort over a user comparator, which may
/// fail or be inconsistent without harming anything. Like Nix, it forces
/// every element first; the comparator then reads the values from one
/// contiguous array, and merging moves indices rather than thunks, which
/// keeps a large sort in cache. With `builtins.lessThan` itself as the
/// comparator (the common `sort lessThan`), values are compared directly,
/// as Nix does, instead of through a call per comparison.
pub fn sort(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let values = items.iter().map(|t| ev.force(t)).collect::<EvalResult<Vec<Value>>>()?;
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    let mut buf = order.clone();
    if matches!(&f, Value::PrimOp(op) if op.name == "lessThan") {
        let mut right_first = |i: u32, j: u32| ev.less_than(&values[j as usize], &values[i as usize], span);
        merge_sort(&mut right_first, &mut order, &mut buf)?;
    } else {
        let mut right_first = |i: u32, j: u32| {
            let (left, right) = (values[i as usize].clone(), values[j as usize].clone());
            let less = call2(ev, &f, right.into(), left.into(), span)?;
            expect_bool(less, span)
        };
        merge_sort(&mut right_first, &mut order, &mut buf)?;
    }
    Ok(Value::list(order.into_iter().map(|i| items[i as usize].clone()).collect()))
}

/// Sorts `v` stably; `right_first(i, j)` says whether `j` must come before `i`.
fn merge_sort(
    right_first: &mut impl FnMut(u32, u32) -> EvalResult<bool>,
    v: &mut [u32],
    buf: &mut [u32],
) -> EvalResult<()> {
    let n = v.len();
    if n <= 1 {
        return Ok(());
    }
    let mid = n / 2;
    merge_sort(right_first, &mut v[..mid], &mut buf[..mid])?;
    merge_sort(right_first, &mut v[mid..], &mut buf[mid..])?;
    buf.copy_from_slice(v);
    let (mut i, mut j, mut k) = (0, mid, 0);
    while i < mid && j < n {
        // Take from the right only if it is strictly less: that keeps the sort stable.
        if right_first(buf[i], buf[j])? {
            v[k] = buf[j];
            j += 1;
        } else {
            v[k] = buf[i];
            i += 1;
        }
        k += 1;
    }
    let tail = if i < mid { &buf[i..mid] } else { &buf[j..n] };
    v[k..].copy_from_slice(tail);
    Ok(())
}

pub fn partition(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    for x in items.iter() {
        if pred(ev, &f, x, span)? {
            right.push(x.clone());
        } else {
            wrong.push(x.clone());
        }
    }
    Ok(attrs_of(vec![("right", Value::list(right)), ("wrong", Value::list(wrong))]))
}

pub fn group_by(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let f = function(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let mut groups: IndexMap<Symbol, Vec<Thunk>> = IndexMap::new();
    for x in items.iter() {
        let key = call1(ev, &f, x.clone(), span)?;
        let Value::String(key) = key else {
            return Err(EvalError::type_error(
                format!("value is {} while a string was expected", key.describe()),
                span,
            ));
        };
        groups.entry(Symbol::intern(&key)).or_default().push(x.clone());
    }
    Ok(Value::attrs(Attrs::from_unsorted(
        groups.into_iter().map(|(k, v)| (k, Value::List(Rc::new(v)).into())).collect(),
    )))
}

pub(crate) fn strings_of(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<Vec<NixStr>> {
    let items = list(ev, t, span)?;
    items.iter().map(|x| string(ev, x, span)).collect()
}

/// `genericClosure { startSet; operator; }`: every item reachable from
/// `startSet` through `operator`, once per distinct `key`, in the order a
/// first-in-first-out work list finds them (Nix's order). Keys are compared
/// with `<`, so they must be numbers, strings, paths or lists of them.
pub fn generic_closure(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = super::attrs(ev, &args[0], span)?;
    let required = |name: &str| {
        set.get_str(name).cloned().ok_or_else(|| {
            EvalError::at(ErrorKind::Eval, format!("attribute '{name}' missing for call to 'genericClosure'"), span)
        })
    };
    let start = required("startSet")?;
    let operator = required("operator")?;
    let mut work: std::collections::VecDeque<Thunk> = list(ev, &start, span)?.iter().cloned().collect();
    let operator = function(ev, &operator, span)?;
    let mut seen = SeenKeys::Ints(FxHashSet::default());
    let mut out = Vec::new();
    while let Some(item) = work.pop_front() {
        let attrs = super::attrs(ev, &item, span)?;
        let key = match attrs.get_str("key") {
            Some(k) => ev.force(&k.clone())?,
            None => return Err(EvalError::at(ErrorKind::Eval, "attribute 'key' required", span)),
        };
        if !seen.insert(ev, key, span)? {
            continue;
        }
        out.push(item.clone());
        let next = call1(ev, &operator, item, span)?;
        let next = ev.expect_list(next, span)?;
        work.extend(next.iter().cloned());
    }
    Ok(Value::list(out))
}

/// The keys `genericClosure` has seen. Keys are told apart by `<`, as in
/// Nix; integers and strings (nearly all keys) are equal under `<` exactly
/// when they are equal, so they go in a hash set. Any other key (or a mix
/// of the two) moves them all to a vector sorted by `<`, searched and
/// grown through the language's comparison, which also reports keys that
/// cannot be compared.
enum SeenKeys {
    Ints(FxHashSet<i64>),
    Strings(FxHashSet<Box<[u8]>>),
    Sorted(Vec<Value>),
}

impl SeenKeys {
    /// Adds `key`; false if an equal key was there already.
    fn insert(&mut self, ev: &mut Evaluator, key: Value, span: Span) -> EvalResult<bool> {
        match (&mut *self, &key) {
            (SeenKeys::Ints(ints), Value::Int(n)) => return Ok(ints.insert(*n)),
            (SeenKeys::Ints(ints), Value::String(s)) if ints.is_empty() => {
                *self = SeenKeys::Strings(FxHashSet::default());
                return self.insert(ev, Value::String(s.clone()), span);
            }
            (SeenKeys::Strings(strings), Value::String(s)) => return Ok(strings.insert(s.as_bytes().into())),
            _ => {}
        }
        let sorted = match self {
            SeenKeys::Sorted(sorted) => sorted,
            SeenKeys::Ints(ints) => {
                let mut keys: Vec<i64> = ints.drain().collect();
                keys.sort_unstable();
                *self = SeenKeys::Sorted(keys.into_iter().map(Value::Int).collect());
                let SeenKeys::Sorted(sorted) = self else { unreachable!("just set") };
                sorted
            }
            SeenKeys::Strings(strings) => {
                let mut keys: Vec<Box<[u8]>> = strings.drain().collect();
                keys.sort_unstable();
                let values = keys.iter().map(|k| Value::string(String::from_utf8_lossy(k).as_ref())).collect();
                *self = SeenKeys::Sorted(values);
                let SeenKeys::Sorted(sorted) = self else { unreachable!("just set") };
                sorted
            }
        };
        let (mut lo, mut hi) = (0, sorted.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if ev.less_than(&key, &sorted[mid], span)? {
                hi = mid;
            } else if ev.less_than(&sorted[mid], &key, span)? {
                lo = mid + 1;
            } else {
                return Ok(false);
            }
        }
        sorted.insert(lo, key);
        Ok(true)
    }
}
