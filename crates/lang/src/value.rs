//! Run-time values. Laziness is explicit: a [`Thunk`] is either a ready value
//! or a shared cell that is pending, being forced (a black hole, which is how
//! infinite recursion is detected) or done. Compiled code lives for the whole
//! process (`&'static`), so thunks and closures point into it directly.

use rustc_hash::{FxBuildHasher, FxHashMap};
use std::cell::{OnceCell, RefCell, UnsafeCell};
use std::rc::Rc;

use crate::compile::{Expr, LambdaInfo};
use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::source_map::{Pos, Span};
use crate::string::NixStr;

/// An interned attribute or variable name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Symbol(u32);

struct Interner {
    ids: FxHashMap<&'static str, u32>,
    names: Vec<&'static str>,
    /// Each name as a ready string value, so `attrNames` and `mapAttrs`
    /// hand out names without allocating.
    strings: Vec<NixStr>,
}

thread_local! {
    static INTERNER: RefCell<Interner> = const {
        RefCell::new(Interner { ids: FxHashMap::with_hasher(FxBuildHasher), names: Vec::new(), strings: Vec::new() })
    };
}

impl Symbol {
    pub fn intern(name: &str) -> Symbol {
        INTERNER.with(|i| {
            let mut i = i.borrow_mut();
            if let Some(&id) = i.ids.get(name) {
                return Symbol(id);
            }
            // Names live as long as the process, like the code that mentions them.
            let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
            let id = i.names.len() as u32;
            i.names.push(leaked);
            i.strings.push(NixStr::from(leaked));
            i.ids.insert(leaked, id);
            Symbol(id)
        })
    }

    pub fn as_str(self) -> &'static str {
        INTERNER.with(|i| i.borrow().names[self.0 as usize])
    }

    /// The name as a string value (shared, not copied).
    pub fn to_value(self) -> Value {
        Value::String(INTERNER.with(|i| i.borrow().strings[self.0 as usize].clone()))
    }
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fully evaluated (weak head normal form) value.
#[derive(Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(NixStr),
    /// An absolute, canonical path (paths are rare; this keeps `Value` small).
    Path(Rc<String>),
    Attrs(Rc<Attrs>),
    List(Rc<Vec<Thunk>>),
    Lambda(Rc<Closure>),
    PrimOp(&'static PrimOp),
    PrimOpApp(Rc<PrimOpApp>),
}

impl Value {
    pub fn string(s: impl Into<NixStr>) -> Value {
        Value::String(s.into())
    }

    pub fn list(items: Vec<Thunk>) -> Value {
        Value::List(Rc::new(items))
    }

    /// A set of these names and values (for a duplicate name, the first wins).
    pub fn attr_set<S: AsRef<str>>(entries: impl IntoIterator<Item = (S, Thunk)>) -> Value {
        Value::attrs(Attrs::from_unsorted(entries.into_iter().map(|(n, t)| (Symbol::intern(n.as_ref()), t)).collect()))
    }

    pub fn attrs(attrs: Attrs) -> Value {
        Value::Attrs(Rc::new(attrs))
    }

    /// The type as `builtins.typeOf` names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::Attrs(_) => "set",
            Value::List(_) => "list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "lambda",
        }
    }

    /// The type as error messages describe it ("an integer", "a set", …).
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::Path(_) => "a path",
            Value::Attrs(_) => "a set",
            Value::List(_) => "a list",
            Value::Lambda(_) => "a function",
            Value::PrimOp(_) => "a built-in function",
            Value::PrimOpApp(_) => "a partially applied built-in function",
        }
    }

    pub fn is_function(&self) -> bool {
        matches!(self, Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_))
    }
}

/// A possibly unevaluated value, shared between everyone who refers to it.
#[derive(Clone)]
pub enum Thunk {
    Ready(Value),
    Lazy(Rc<LazyCell>),
}

/// The state of a lazy cell.
pub enum Lazy {
    /// Evaluate this expression in this environment.
    Pending(&'static Expr, Rc<Env>),
    /// Apply a (not yet forced) function to one or two arguments (used by
    /// `map`, `mapAttrs`, …).
    Apply(Thunk, Thunk),
    /// Boxed: rare, and it would make every cell larger.
    Apply2(Box<(Thunk, Thunk, Thunk)>),
    /// Being forced right now; forcing it again is infinite recursion.
    Blackhole,
    Done(Value),
}

/// The shared, mutable cell of a lazy thunk. It is a bare `UnsafeCell`
/// rather than a `RefCell`: every thunk has one, and the borrow flag made
/// each cell 8 bytes larger (56 instead of 48 bytes with its `Rc`, which
/// the allocator rounds to 64) and every force check it. The methods below
/// are the only access, and none of them keeps a reference into the cell
/// beyond its own body.
pub struct LazyCell(UnsafeCell<Lazy>);

impl LazyCell {
    pub fn new(state: Lazy) -> LazyCell {
        LazyCell(UnsafeCell::new(state))
    }

    /// The value, if the cell is done.
    #[inline]
    pub fn done(&self) -> Option<Value> {
        // SAFETY: values are single-threaded (`Rc`), and the only writes to
        // the cell are `replace`/`set` below, which cannot run while this
        // shared reference lives: cloning a `Value` only bumps reference
        // counts and never reaches a thunk cell.
        match unsafe { &*self.0.get() } {
            Lazy::Done(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// Puts `state` in the cell and returns what was there.
    #[inline]
    pub fn replace(&self, state: Lazy) -> Lazy {
        // SAFETY: no reference into the cell outlives the methods of this
        // type (see `done`), so this is the only access while it runs; the
        // old state is moved out and dropped by the caller, after the
        // access has ended.
        unsafe { std::mem::replace(&mut *self.0.get(), state) }
    }

    /// A copy of the state (`__overrides` puts one cell's state in another).
    pub fn copy_state(&self) -> Lazy {
        // SAFETY: as in `done`: cloning thunks, values and environments only
        // bumps reference counts.
        match unsafe { &*self.0.get() } {
            Lazy::Pending(expr, env) => Lazy::Pending(expr, env.clone()),
            Lazy::Apply(f, a) => Lazy::Apply(f.clone(), a.clone()),
            Lazy::Apply2(args) => Lazy::Apply2(args.clone()),
            Lazy::Blackhole => Lazy::Blackhole,
            Lazy::Done(v) => Lazy::Done(v.clone()),
        }
    }

    pub fn set(&self, state: Lazy) {
        drop(self.replace(state));
    }
}

impl Thunk {
    pub(crate) fn pending(expr: &'static Expr, env: Rc<Env>) -> Thunk {
        Thunk::Lazy(Rc::new(LazyCell::new(Lazy::Pending(expr, env))))
    }

    pub(crate) fn apply(f: Thunk, arg: Thunk) -> Thunk {
        Thunk::Lazy(Rc::new(LazyCell::new(Lazy::Apply(f, arg))))
    }

    pub(crate) fn apply2(f: Thunk, a: Thunk, b: Thunk) -> Thunk {
        Thunk::Lazy(Rc::new(LazyCell::new(Lazy::Apply2(Box::new((f, a, b))))))
    }

    /// The value, if it has already been computed.
    pub fn peek(&self) -> Option<Value> {
        match self {
            Thunk::Ready(v) => Some(v.clone()),
            Thunk::Lazy(cell) => cell.done(),
        }
    }

    /// Whether two thunks are the very same cell (Nix compares such values equal).
    pub fn same_cell(&self, other: &Thunk) -> bool {
        matches!((self, other), (Thunk::Lazy(a), Thunk::Lazy(b)) if Rc::ptr_eq(a, b))
    }
}

impl From<Value> for Thunk {
    fn from(v: Value) -> Thunk {
        Thunk::Ready(v)
    }
}

/// One attribute: its name, where it was defined, and its value.
#[derive(Clone)]
pub struct Attr {
    pub name: Symbol,
    pub pos: Pos,
    pub value: Thunk,
}

impl Attr {
    pub fn new(name: Symbol, value: Thunk) -> Attr {
        Attr { name, pos: Pos::NONE, value }
    }
}

/// An attribute set: entries kept sorted by symbol id for fast lookup and
/// merging; [`Attrs::sorted_by_name`] gives the order users see.
#[derive(Default, Clone)]
pub struct Attrs {
    entries: Vec<Attr>,
}

impl Attrs {
    /// Builds from entries in any order, without positions; for duplicate
    /// names the first wins.
    pub fn from_unsorted(entries: Vec<(Symbol, Thunk)>) -> Attrs {
        Attrs::from_attrs(entries.into_iter().map(|(name, value)| Attr::new(name, value)).collect())
    }

    /// Builds from attributes in any order; for duplicate names the first wins.
    pub fn from_attrs(mut entries: Vec<Attr>) -> Attrs {
        entries.sort_by_key(|a| a.name);
        entries.dedup_by_key(|a| a.name);
        Attrs { entries }
    }

    /// Builds from attributes already sorted by symbol and free of duplicates.
    pub fn from_sorted(entries: Vec<Attr>) -> Attrs {
        debug_assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
        Attrs { entries }
    }

    #[inline]
    fn index(&self, key: Symbol) -> Option<usize> {
        let entries = &self.entries[..];
        let found = if entries.len() < INTERPOLATE_ABOVE {
            entries.binary_search_by_key(&key, |a| a.name)
        } else {
            interpolation_search(entries, key)
        };
        found.ok()
    }

    #[inline]
    pub fn get(&self, key: Symbol) -> Option<&Thunk> {
        self.index(key).map(|i| &self.entries[i].value)
    }

    pub fn get_str(&self, key: &str) -> Option<&Thunk> {
        self.get(Symbol::intern(key))
    }

    /// Where attribute `key` was defined, if it exists and that is known.
    pub fn position(&self, key: Symbol) -> Option<Pos> {
        self.index(key).map(|i| self.entries[i].pos)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in internal (symbol id) order.
    pub fn entries(&self) -> &[Attr] {
        &self.entries
    }

    /// Entries sorted by name, as Nix shows them.
    pub fn sorted_by_name(&self) -> Vec<(&'static str, &Thunk)> {
        let mut v: Vec<_> = self.entries.iter().map(|a| (a.name.as_str(), &a.value)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// `self // other`: a linear merge of two sorted entry lists.
    pub fn update(&self, other: &Attrs) -> Attrs {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].name.cmp(&b[j].name) {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(b[j].clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Attrs { entries: out }
    }
}

/// Sets at least this large are searched by interpolation (see
/// [`interpolation_search`]); smaller ones fit in a few cache lines anyway.
const INTERPOLATE_ABOVE: usize = 64;

/// Finds `key` in entries sorted by symbol, starting from where it would
/// sit if the ids were spread evenly. Symbols are numbered in the order
/// names are first seen, so a large set made in one go (a package set,
/// `listToAttrs` of generated names) has nearly consecutive ids and the
/// first guess lands on or next to the entry: one or two cache misses
/// instead of binary search's dozen, which dominated lookups in large
/// sets. From the guess the search gallops outwards, so uneven ids cost at
/// most about twice a binary search.
fn interpolation_search(entries: &[Attr], key: Symbol) -> Result<usize, usize> {
    let last = entries.len() - 1;
    let (first_id, last_id) = (entries[0].name.0, entries[last].name.0);
    if key.0 <= first_id || key.0 >= last_id {
        return if key.0 == first_id {
            Ok(0)
        } else if key.0 == last_id {
            Ok(last)
        } else if key.0 < first_id {
            Err(0)
        } else {
            Err(last + 1)
        };
    }
    let span = u64::from(last_id - first_id);
    let guess = (u64::from(key.0 - first_id) * last as u64 / span) as usize;
    let at = entries[guess].name;
    // Gallop from the guess towards the key, then search the bracket found.
    let (lo, hi) = if at < key {
        let mut step = 1;
        let mut lo = guess + 1;
        loop {
            let probe = guess + step;
            if probe >= last || entries[probe].name >= key {
                break (lo, probe.min(last) + 1);
            }
            lo = probe + 1;
            step *= 2;
        }
    } else if at > key {
        let mut step = 1;
        let mut hi = guess;
        loop {
            if step >= guess || entries[guess - step].name <= key {
                break (guess.saturating_sub(step), hi);
            }
            hi = guess - step;
            step *= 2;
        }
    } else {
        return Ok(guess);
    };
    entries[lo..hi].binary_search_by_key(&key, |a| a.name).map(|i| lo + i).map_err(|i| lo + i)
}

/// A lexical environment frame: the values of one `let`, `rec`, lambda or
/// `with`, and the frame around it.
pub struct Env {
    pub parent: Option<Rc<Env>>,
    /// Set once; recursive frames are created first so their thunks can point back.
    pub slots: OnceCell<Slots>,
}

/// A frame's values. Most frames (plain lambdas, `with`) hold one value,
/// which then needs no second allocation.
pub enum Slots {
    One(Thunk),
    Two(Thunk, Thunk),
    Many(Box<[Thunk]>),
}

impl Env {
    pub fn new(parent: Option<Rc<Env>>, slots: Slots) -> Rc<Env> {
        Rc::new(Env { parent, slots: OnceCell::from(slots) })
    }

    /// A frame whose slots are filled in later with [`Env::fill`].
    pub fn recursive(parent: Rc<Env>) -> Rc<Env> {
        Rc::new(Env { parent: Some(parent), slots: OnceCell::new() })
    }

    pub fn fill(&self, slots: Vec<Thunk>) {
        let _ = self.slots.set(Slots::Many(slots.into_boxed_slice()));
    }

    #[inline]
    pub fn slot(&self, index: u32) -> &Thunk {
        match self.slots.get().expect("environment frame is initialised before use") {
            Slots::One(t) => t,
            Slots::Two(a, b) => {
                if index == 0 {
                    a
                } else {
                    b
                }
            }
            Slots::Many(ts) => &ts[index as usize],
        }
    }

    /// The slot, or `None` while a recursive frame is still being made.
    pub fn try_slot(&self, index: u32) -> Option<&Thunk> {
        match self.slots.get()? {
            Slots::One(t) => Some(t),
            Slots::Two(a, b) => Some(if index == 0 { a } else { b }),
            Slots::Many(ts) => ts.get(index as usize),
        }
    }

    #[inline]
    pub fn ancestor(self: &Rc<Env>, level: u32) -> &Rc<Env> {
        let mut env = self;
        for _ in 0..level {
            env = env.parent.as_ref().expect("scope analysis bounds every level");
        }
        env
    }
}

/// A lambda together with the environment it was created in, and the
/// arguments a multi-argument lambda (`x: y: …`) has received so far.
pub struct Closure {
    pub lambda: &'static LambdaInfo,
    pub env: Rc<Env>,
    pub applied: Vec<Thunk>,
}

/// The Rust side of a built-in function.
pub type PrimOpFn = fn(&mut Evaluator, &[Thunk], Span) -> EvalResult<Value>;

pub struct PrimOp {
    pub name: &'static str,
    pub arity: usize,
    pub func: PrimOpFn,
}

/// A built-in applied to fewer arguments than it takes.
pub struct PrimOpApp {
    pub op: &'static PrimOp,
    pub args: Vec<Thunk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interpolation search finds exactly what binary search finds, for
    /// dense, sparse and clustered ids, present and absent keys.
    #[test]
    fn interpolation_search_agrees_with_binary_search() {
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for round in 0..200 {
            let n = 64 + (next() as usize % 500);
            let mut ids: Vec<u32> = match round % 3 {
                0 => (0..n as u32).map(|i| 1000 + i).collect(),
                1 => (0..n).map(|_| next() % 100_000).collect(),
                _ => (0..n).map(|i| if i % 2 == 0 { next() % 50 } else { 90_000 + next() % 50 }).collect(),
            };
            ids.sort_unstable();
            ids.dedup();
            if ids.len() < 2 {
                continue;
            }
            let entries: Vec<Attr> = ids.iter().map(|&i| Attr::new(Symbol(i), Value::Null.into())).collect();
            for probe in 0..400 {
                let key = Symbol(if probe % 2 == 0 { ids[next() as usize % ids.len()] } else { next() % 100_100 });
                let expected = entries.binary_search_by_key(&key, |a| a.name).ok();
                assert_eq!(interpolation_search(&entries, key).ok(), expected, "ids {ids:?} key {key:?}");
            }
        }
    }
}
