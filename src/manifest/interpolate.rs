//! `${name}` interpolation in manifest strings. `$${` writes a literal `${`.

/// What a variable name resolves to in one place of the manifest.
pub enum Lookup {
    Found(String),
    /// The name exists but has no value here (e.g. `${arch}` in a `tag`): the reason says where it is known.
    NotHere(&'static str),
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InterpError {
    Unknown {
        name: String,
        at: usize,
        len: usize,
    },
    NotHere {
        name: String,
        at: usize,
        len: usize,
        why: &'static str,
    },
    Unclosed {
        at: usize,
    },
}

/// Replace every `${name}` in `input` through `lookup`.
pub fn interpolate(input: &str, lookup: &dyn Fn(&str) -> Lookup) -> Result<String, InterpError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut pos = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
            pos += i + 3;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(InterpError::Unclosed { at: pos + i });
            };
            let name = &body[..end];
            let len = end + 3;
            match lookup(name) {
                Lookup::Found(v) => out.push_str(&v),
                Lookup::NotHere(why) => {
                    return Err(InterpError::NotHere {
                        name: name.to_owned(),
                        at: pos + i,
                        len,
                        why,
                    });
                }
                Lookup::Unknown => {
                    return Err(InterpError::Unknown {
                        name: name.to_owned(),
                        at: pos + i,
                        len,
                    });
                }
            }
            rest = &body[end + 1..];
            pos += i + len;
        } else {
            out.push('$');
            rest = &after[1..];
            pos += i + 1;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(n: &str) -> Lookup {
        match n {
            "version" => Lookup::Found("3.15".into()),
            "arch" => Lookup::NotHere("only per platform"),
            _ => Lookup::Unknown,
        }
    }

    #[test]
    fn replaces_and_escapes() {
        assert_eq!(interpolate("a-${version}-b", &vars).unwrap(), "a-3.15-b");
        assert_eq!(interpolate("$${HOME} $x", &vars).unwrap(), "${HOME} $x");
        assert_eq!(
            interpolate("x${nope}", &vars),
            Err(InterpError::Unknown {
                name: "nope".into(),
                at: 1,
                len: 7
            })
        );
        assert!(matches!(
            interpolate("${arch}", &vars),
            Err(InterpError::NotHere { .. })
        ));
        assert_eq!(
            interpolate("ab${version", &vars),
            Err(InterpError::Unclosed { at: 2 })
        );
    }
}
