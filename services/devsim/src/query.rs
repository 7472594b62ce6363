//! `print` query evaluation (ROUTEROS-NOTES §1.4): a stack of booleans, starting as an
//! infinite stack of `true`; an item matches when no `false` is left.

use routeros::Query;

/// One printable row: `(name, value)` pairs, `.id` first when the menu has ids.
pub(crate) type Row = Vec<(String, String)>;

pub(crate) fn get<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    row.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn canon(v: &str) -> &str {
    match v {
        "yes" => "true",
        "no" => "false",
        other => other,
    }
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Stack with an infinite supply of `true` below its bottom.
struct Stack(Vec<bool>);

impl Stack {
    fn pop(&mut self) -> bool {
        self.0.pop().unwrap_or(true)
    }
    fn at(&self, idx: usize) -> bool {
        if idx < self.0.len() {
            self.0[self.0.len() - 1 - idx]
        } else {
            true
        }
    }
}

fn apply_ops(st: &mut Stack, ops: &str) {
    let chars: Vec<char> = ops.chars().collect();
    let mut i = 0;
    let mut prev_was_index = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let idx: usize = chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            let v = st.at(idx);
            if i == chars.len() {
                // index at the end replaces the whole stack with that entry
                st.0 = vec![v];
            } else {
                st.0.push(v);
            }
            prev_was_index = true;
            continue;
        }
        match c {
            '!' => {
                let v = st.pop();
                st.0.push(!v);
            }
            '&' => {
                let (a, b) = (st.pop(), st.pop());
                st.0.push(a && b);
            }
            '|' => {
                let (a, b) = (st.pop(), st.pop());
                st.0.push(a || b);
            }
            '.' if !prev_was_index => {
                let v = st.at(0);
                st.0.push(v);
            }
            _ => {}
        }
        prev_was_index = false;
        i += 1;
    }
}

/// Whether a row matches the query words.
pub(crate) fn matches(row: &Row, queries: &[Query]) -> bool {
    let mut st = Stack(Vec::new());
    for q in queries {
        match q {
            Query::Has(n) => st.0.push(get(row, n).is_some()),
            Query::Absent(n) => st.0.push(get(row, n).is_none()),
            Query::Equals(n, v) => {
                let v = String::from_utf8_lossy(v);
                st.0.push(get(row, n).is_some_and(|x| canon(x) == canon(&v)));
            }
            Query::Less(n, v) => {
                let v = String::from_utf8_lossy(v);
                st.0.push(get(row, n).is_some_and(|x| compare(x, &v).is_lt()));
            }
            Query::Greater(n, v) => {
                let v = String::from_utf8_lossy(v);
                st.0.push(get(row, n).is_some_and(|x| compare(x, &v).is_gt()));
            }
            Query::Ops(ops) => apply_ops(&mut st, ops),
        }
    }
    st.0.iter().all(|b| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str) -> Row {
        vec![
            ("type".into(), t.into()),
            ("disabled".into(), "false".into()),
        ]
    }

    #[test]
    fn or_and_not() {
        let q = vec![
            Query::eq("type", "ether"),
            Query::eq("type", "vlan"),
            Query::Ops("|".into()),
        ];
        assert!(matches(&row("ether"), &q));
        assert!(matches(&row("vlan"), &q));
        assert!(!matches(&row("bridge"), &q));
        let q = vec![Query::eq("type", "ether"), Query::Ops("!".into())];
        assert!(!matches(&row("ether"), &q));
        assert!(matches(&row("vlan"), &q));
        // plain successive tests are ANDed; yes/no equal true/false
        let q = vec![Query::eq("type", "ether"), Query::eq("disabled", "no")];
        assert!(matches(&row("ether"), &q));
        assert!(matches(&row("x"), &[Query::Has("type".into())]));
        assert!(!matches(&row("x"), &[Query::Has("comment".into())]));
        assert!(matches(&row("x"), &[Query::Absent("comment".into())]));
        let q = vec![Query::Greater("n".into(), "9".into())];
        assert!(matches(&vec![("n".into(), "10".into())], &q));
    }
}
