//! What `nix-instantiate` writes: the derivations a value is or holds
//! (itself, or those among a list's elements or a set's attributes), each
//! as the `.drv` path evaluation gives it.

use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::value::Value;

impl Evaluator {
    /// The `.drv` paths of the derivations `value` is or holds, in order
    /// (a set's attributes by name), with every derivation made written.
    pub fn derivation_paths(&mut self, value: &Value) -> EvalResult<Vec<String>> {
        let candidates: Vec<Value> = match value {
            Value::List(items) => items.iter().map(|t| self.force(t)).collect::<Result<_, _>>()?,
            Value::Attrs(attrs) if !self.is_derivation(attrs)? => {
                let mut out = Vec::new();
                for (_, t) in attrs.sorted_by_name() {
                    out.push(self.force(t)?);
                }
                out
            }
            _ => vec![value.clone()],
        };
        let mut paths = Vec::new();
        for v in candidates {
            if let Value::Attrs(attrs) = &v {
                if self.is_derivation(attrs)? {
                    if let Some(t) = attrs.get_str("drvPath") {
                        let drv = self.force(&t.clone())?;
                        paths.push(self.coerce_to_string(&drv, Default::default(), false, false)?.to_string());
                    }
                }
            }
        }
        self.flush_derivations()?;
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_are_found_in_the_value_its_list_or_its_set() {
        let dir = std::env::temp_dir().join(format!("mini-instantiate-{}", std::process::id()));
        let mut ev = Evaluator::new();
        ev.set_store(mini_store::store::Store::open(&dir).unwrap());
        let drv = |name: &str| format!(r#"derivation {{ name = "{name}"; builder = "/b"; system = "s"; }}"#);
        let mut paths = |text: String| {
            let value = ev.eval_text(&text).unwrap();
            ev.derivation_paths(&value).unwrap()
        };
        let one = paths(drv("a"));
        assert_eq!(one.len(), 1);
        assert!(one[0].ends_with("-a.drv"), "{one:?}");
        assert_eq!(paths(format!("[ ({}) 1 ]", drv("a"))), one);
        let set = paths(format!("{{ z = {}; y = {}; n = 1; }}", drv("z"), drv("y")));
        assert!(set[0].ends_with("-y.drv") && set[1].ends_with("-z.drv"), "{set:?}");
        assert!(paths("{ type = \"x\"; }".into()).is_empty());
        let written = mini_store::store::Store::open(&dir).unwrap();
        assert!(written.is_valid(&mini_store::store_path::StorePath::parse(&one[0]).unwrap()));
        let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&dir).status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
