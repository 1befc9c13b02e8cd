//! Times `mini_debian::root::assemble` on a directory of `.deb` files, for
//! comparing with `dpkg -x` of the same files (bench/README):
//! `cargo run --release -p mini-debian --example assemble -- DEBS_DIR OUT_DIR`.
//! Dependencies are read from each package's `Depends` and `Pre-Depends`
//! (the first alternative present in the directory).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use mini_debian::deb::Deb;
use mini_debian::root::{assemble, RootInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [debs_dir, out] = args.as_slice() else {
        return Err("usage: assemble DEBS_DIR OUT_DIR".into());
    };
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(debs_dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "deb"));
    paths.sort();
    let mut inputs = Vec::new();
    let mut raw_depends = Vec::new();
    for path in paths {
        let control = Deb::open(&path)?.control()?;
        let field = |name: &str| control.paragraph.get(name).unwrap_or("").to_string();
        let depends = [field("Depends"), field("Pre-Depends")].join(",");
        let alternatives: Vec<Vec<String>> = depends
            .split(',')
            .map(|clause| {
                clause
                    .split('|')
                    .map(|alt| alt.split(['(', ':', ' ']).find(|w| !w.is_empty()).unwrap_or("").to_string())
                    .collect()
            })
            .collect();
        raw_depends.push(alternatives);
        inputs.push(RootInput {
            name: field("Package"),
            version: field("Version"),
            architecture: field("Architecture"),
            path,
            depends: Vec::new(),
        });
    }
    let names: BTreeSet<String> = inputs.iter().map(|i| i.name.clone()).collect();
    for (input, clauses) in inputs.iter_mut().zip(raw_depends) {
        let mut depends: BTreeSet<String> = BTreeSet::new();
        for clause in clauses {
            if let Some(found) = clause.into_iter().find(|alt| names.contains(alt)) {
                depends.insert(found);
            }
        }
        input.depends = depends.into_iter().collect();
    }
    let start = Instant::now();
    let assembled = assemble(&inputs, &PathBuf::from(out), &mut std::io::sink())?;
    eprintln!(
        "assembled {} packages ({} entries, {} replaced) in {:.3} s",
        assembled.order.len(),
        assembled.entries,
        assembled.replaced,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
