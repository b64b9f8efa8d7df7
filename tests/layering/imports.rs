//! Which file of a crate names which: a reader of Rust source good enough for a
//! crate written as this one is (paths spelled `crate::`, `super::`, `self::` or
//! relative to a `mod.rs`; re-exports by `pub use`). Not a parser: it tokenises
//! code with comments and strings removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

type ModulePath = Vec<String>;

pub struct SourceTree {
    files: Vec<String>,
    modules: Vec<ModulePath>,
    edges: BTreeSet<(usize, usize)>,
    /// Each file's code, as tokens (comments, strings and test modules left out).
    code: Vec<Vec<Token>>,
}

/// One file's `pub use` re-exports: name → the absolute path it stands for, and
/// the modules it re-exports everything of.
#[derive(Default)]
struct Exports {
    names: HashMap<String, ModulePath>,
    globs: Vec<ModulePath>,
}

impl SourceTree {
    /// Every `.rs` file under `root` (the crate's `lib.rs` directory), `main.rs`
    /// aside.
    pub fn read(root: &Path) -> SourceTree {
        let mut files = Vec::new();
        collect(root, root, &mut files);
        SourceTree::from_files(files)
    }

    /// From (path relative to the crate root, text) pairs.
    pub fn from_files(files: Vec<(String, String)>) -> SourceTree {
        let files: Vec<(String, String)> = files
            .into_iter()
            .filter(|(path, _)| path != "main.rs")
            .collect();
        let modules: Vec<ModulePath> = files.iter().map(|(p, _)| module_of(p)).collect();
        let by_module: HashMap<ModulePath, usize> = modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i))
            .collect();
        let code: Vec<Vec<Token>> = files.iter().map(|(_, text)| tokens(&strip(text))).collect();
        let exports: Vec<Exports> = code
            .iter()
            .zip(&modules)
            .map(|(tokens, module)| exports_of(tokens, module, &by_module))
            .collect();
        let resolver = Resolver {
            by_module: &by_module,
            exports: &exports,
            modules: &modules,
        };
        let mut edges = BTreeSet::new();
        for (from, tokens) in code.iter().enumerate() {
            for path in referenced_paths(tokens, &modules[from], &by_module) {
                if let Some(to) = resolver.file_of(&path, 0) {
                    if to != from {
                        edges.insert((from, to));
                    }
                }
            }
        }
        SourceTree {
            files: files.into_iter().map(|(p, _)| p).collect(),
            modules,
            edges,
            code,
        }
    }

    /// The files that name any of `crates` (as `crate_name::…`), with the crate.
    pub fn users_of(&self, crates: &[&str]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (file, tokens) in self.code.iter().enumerate() {
            for (i, token) in tokens.iter().enumerate() {
                let Token::Ident(name) = token else { continue };
                let path_start = i == 0 || tokens[i - 1] != Token::PathSep;
                if path_start
                    && crates.contains(&name.as_str())
                    && tokens.get(i + 1) == Some(&Token::PathSep)
                {
                    out.push((file, name.clone()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.edges.iter().copied()
    }

    pub fn file(&self, i: usize) -> &str {
        &self.files[i]
    }

    pub fn module(&self, i: usize) -> &[String] {
        &self.modules[i]
    }

    /// The import cycles among the files whose module `member` accepts, each as
    /// the files of one strongly connected component.
    pub fn cycles_among(&self, member: impl Fn(&[String]) -> bool) -> Vec<Vec<String>> {
        let inside: Vec<bool> = self.modules.iter().map(|m| member(m)).collect();
        let mut next: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(a, b) in &self.edges {
            if inside[a] && inside[b] {
                next.entry(a).or_default().push(b);
            }
        }
        strongly_connected(self.files.len(), &next)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut names: Vec<String> =
                    component.iter().map(|&i| self.files[i].clone()).collect();
                names.sort();
                names
            })
            .collect()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.push((relative, text));
            }
        }
    }
}

/// `a/b.rs` → `a::b`; `a/mod.rs` → `a`; `lib.rs` → the crate root.
fn module_of(path: &str) -> ModulePath {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The source with comments, string and char literals and `#[cfg(test)] mod`
/// blocks removed.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char_before(&chars, i)
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), kept.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    remove_test_modules(&out)
}

fn ident_char_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Drops every `#[cfg(test)] mod name { … }`: tests may reach anywhere.
fn remove_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let skipped = after.len() - trimmed.len();
        let start_of_item = at + "#[cfg(test)]".len() + skipped;
        if !trimmed.starts_with("mod ") {
            // Another test-only item: drop the attribute only.
            out.replace_range(at..start_of_item, "");
            continue;
        }
        let Some(open) = out[start_of_item..].find(['{', ';']) else {
            break;
        };
        let open = start_of_item + open;
        if out.as_bytes()[open] == b';' {
            out.replace_range(at..=open, "");
            continue;
        }
        let mut depth = 0usize;
        let mut end = out.len();
        for (offset, byte) in out.as_bytes()[open..].iter().enumerate() {
            match byte {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// One path a `use` tree names, and what it is known by in the file.
struct UseItem {
    path: Vec<String>,
    name: Option<String>,
    glob: bool,
}

/// Expands a `use` tree starting at `tokens[*at]` (after `use`) up to `;`.
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, out: &mut Vec<UseItem>) {
    let mut path = prefix;
    while *at < tokens.len() {
        match &tokens[*at] {
            Token::Ident(word) if word == "as" => {
                *at += 1;
                if let Some(Token::Ident(alias)) = tokens.get(*at) {
                    if let Some(item) = out.last_mut() {
                        item.name = Some(alias.clone());
                    }
                }
                *at += 1;
            }
            Token::Ident(word) => {
                path.push(word.clone());
                *at += 1;
                if tokens.get(*at) != Some(&Token::PathSep) {
                    let mut full = path.clone();
                    let name = if word == "self" {
                        full.pop();
                        full.last().cloned()
                    } else {
                        Some(word.clone())
                    };
                    out.push(UseItem {
                        path: full,
                        name,
                        glob: false,
                    });
                    return;
                }
                *at += 1;
            }
            Token::Punct('*') => {
                out.push(UseItem {
                    path: path.clone(),
                    name: None,
                    glob: true,
                });
                *at += 1;
                return;
            }
            Token::Punct('{') => {
                *at += 1;
                loop {
                    match tokens.get(*at) {
                        Some(Token::Punct('}')) => {
                            *at += 1;
                            return;
                        }
                        Some(Token::Punct(',')) => *at += 1,
                        None => return,
                        _ => use_tree(tokens, at, path.clone(), out),
                    }
                }
            }
            _ => return,
        }
    }
}

/// Whether the `use` at `at` is `pub use`, `pub(crate) use` or `pub(in path) use`.
fn is_public(tokens: &[Token], at: usize) -> bool {
    let mut i = at;
    if i > 0 && tokens[i - 1] == Token::Punct(')') {
        // Back over the visibility's parentheses.
        while i > 0 && tokens[i - 1] != Token::Punct('(') {
            i -= 1;
        }
        i = i.saturating_sub(1);
    }
    i > 0 && tokens[i - 1] == Token::Ident("pub".into())
}

/// Every `use` statement of a file: (whether it is `pub`, its items).
fn use_statements(tokens: &[Token]) -> Vec<(bool, Vec<UseItem>)> {
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        if tokens[i] != Token::Ident("use".into()) {
            continue;
        }
        let public = is_public(tokens, i);
        let mut at = i + 1;
        let mut items = Vec::new();
        use_tree(tokens, &mut at, Vec::new(), &mut items);
        out.push((public, items));
    }
    out
}

/// A path as written in `module` → absolute, or `None` for another crate's.
fn absolute(
    path: &[String],
    module: &[String],
    by_module: &HashMap<ModulePath, usize>,
) -> Option<ModulePath> {
    let first = path.first()?;
    let mut base: ModulePath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                m.pop();
                rest = &rest[1..];
            }
            m.extend(rest.iter().cloned());
            return Some(m);
        }
        // A child module, named without `self::` (as `mod.rs` files do).
        _ => {
            let mut child = module.to_vec();
            child.push(first.clone());
            if !by_module.contains_key(&child) {
                return None;
            }
            let mut m = module.to_vec();
            m.extend(path.iter().cloned());
            return Some(m);
        }
    };
    base.extend(path[1..].iter().cloned());
    Some(base)
}

fn exports_of(
    tokens: &[Token],
    module: &[String],
    by_module: &HashMap<ModulePath, usize>,
) -> Exports {
    let mut exports = Exports::default();
    for (public, items) in use_statements(tokens) {
        if !public {
            continue;
        }
        for item in items {
            let Some(target) = absolute(&item.path, module, by_module) else {
                continue;
            };
            if item.glob {
                exports.globs.push(target);
            } else if let Some(name) = item.name {
                exports.names.insert(name, target);
            }
        }
    }
    exports
}

/// Every crate-internal path a file names: its `use` items, and `crate::`,
/// `super::` and `self::` paths in code.
fn referenced_paths(
    tokens: &[Token],
    module: &[String],
    by_module: &HashMap<ModulePath, usize>,
) -> Vec<ModulePath> {
    let mut out = Vec::new();
    for (_, items) in use_statements(tokens) {
        for item in items {
            if let Some(path) = absolute(&item.path, module, by_module) {
                out.push(path);
            }
        }
    }
    let mut i = 0;
    while i < tokens.len() {
        let starts = matches!(&tokens[i], Token::Ident(w) if w == "crate" || w == "super" || w == "self")
            && tokens.get(i + 1) == Some(&Token::PathSep);
        // `pub(in crate::a)` names where an item is visible, not what it uses.
        let visibility = i >= 3
            && tokens[i - 1] == Token::Ident("in".into())
            && tokens[i - 2] == Token::Punct('(')
            && tokens[i - 3] == Token::Ident("pub".into());
        if !starts || visibility {
            i += 1;
            continue;
        }
        let mut path = Vec::new();
        // Ends in `::{` or `::*`: a `use` tree, which `use_statements` reads.
        let mut tree = false;
        while let Some(Token::Ident(word)) = tokens.get(i) {
            path.push(word.clone());
            if tokens.get(i + 1) != Some(&Token::PathSep) {
                break;
            }
            i += 2;
            tree = matches!(tokens.get(i), Some(Token::Punct('{' | '*')));
        }
        i += 1;
        if tree {
            continue;
        }
        if let Some(path) = absolute(&path, module, by_module) {
            out.push(path);
        }
    }
    out
}

struct Resolver<'a> {
    by_module: &'a HashMap<ModulePath, usize>,
    exports: &'a [Exports],
    modules: &'a [ModulePath],
}

impl Resolver<'_> {
    /// The file that defines what `path` names: the deepest module on it, or,
    /// where that module re-exports the next name, the file it comes from.
    fn file_of(&self, path: &[String], depth: usize) -> Option<usize> {
        let (file, used) = (0..=path.len())
            .rev()
            .find_map(|n| self.by_module.get(&path[..n]).map(|&f| (f, n)))?;
        if depth > 8 || used == path.len() {
            return Some(file);
        }
        let name = &path[used];
        let exports = &self.exports[file];
        if let Some(target) = exports.names.get(name) {
            let mut full = target.clone();
            full.extend(path[used + 1..].iter().cloned());
            return self.file_of(&full, depth + 1).or(Some(file));
        }
        for glob in &exports.globs {
            let mut full = glob.clone();
            full.extend(path[used..].iter().cloned());
            if let Some(found) = self.file_of(&full, depth + 1) {
                if &self.modules[found] != glob {
                    return Some(found);
                }
            }
        }
        Some(file)
    }
}

/// Tarjan's strongly connected components over nodes `0..n`.
fn strongly_connected(n: usize, next: &BTreeMap<usize, Vec<usize>>) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a BTreeMap<usize, Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.next.get(&v).map_or(&[][..], Vec::as_slice) {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}
