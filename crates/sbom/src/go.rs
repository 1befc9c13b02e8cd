//! Go modules from `vendor/modules.txt`, the list `go mod vendor` writes
//! of every module it copied: the one record of a Go program's
//! dependencies that survives into the store (buildGoModule's vendoring
//! output is that `vendor/` directory). Pure.

/// A module a Go build used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoModule {
    pub path: String,
    pub version: String,
}

/// The modules `modules.txt` lists. A module line is `# PATH VERSION`,
/// optionally `=> NEW-PATH NEW-VERSION` (the module actually used, which is
/// the one listed) or `=> ./DIR` (code of the main module's own tree, not a
/// dependency, so left out). `## …` lines and package lines are not
/// modules; neither is a replacement line without a version.
pub fn parse_modules_txt(text: &str) -> Vec<GoModule> {
    let mut modules: Vec<GoModule> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter_map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (path, version) = match fields.as_slice() {
                [path, version] => (*path, *version),
                [_, _, "=>", path, version] => (*path, *version),
                _ => return None,
            };
            (!path.is_empty() && version.starts_with('v'))
                .then(|| GoModule { path: path.to_string(), version: version.to_string() })
        })
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, version: &str) -> GoModule {
        GoModule { path: path.into(), version: version.into() }
    }

    #[test]
    fn modules_are_read_from_their_header_lines() {
        let text = "\
# github.com/google/uuid v1.6.0
## explicit; go 1.19
github.com/google/uuid
# golang.org/x/text v0.14.0 => golang.org/x/text v0.15.0
## explicit; go 1.18
golang.org/x/text/language
# example.com/local v0.0.0 => ./local
## explicit
example.com/local
# example.com/wild => ./wild
# example.com/old v2.0.0+incompatible
";
        assert_eq!(
            parse_modules_txt(text),
            [
                module("example.com/old", "v2.0.0+incompatible"),
                module("github.com/google/uuid", "v1.6.0"),
                module("golang.org/x/text", "v0.15.0"),
            ]
        );
        assert!(parse_modules_txt("").is_empty());
        assert!(parse_modules_txt("## explicit\n#nospace v1\n# lone\n").is_empty());
    }
}
