//! Kernel command-line tokenizer.
//!
//! Follows the kernel's own `next_arg()` (lib/cmdline.c): parameters are separated by
//! whitespace, and double quotes may wrap either the whole parameter or just its value;
//! the quotes themselves are removed. There is no escaping.

/// One `key` or `key=value` parameter as the kernel would hand it to a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// Splits a command line into parameters, in order. Everything after a lone `--` belongs
/// to init's argv and is not a kernel parameter, so it is dropped here.
pub fn tokenize(cmdline: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut chars = cmdline.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut in_quote = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !in_quote {
                break;
            }
            chars.next();
            if c == '"' {
                in_quote = !in_quote;
            } else {
                token.push(c);
            }
        }
        if token == "--" {
            break;
        }
        let param = match token.split_once('=') {
            Some((k, v)) => Param {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => Param {
                key: token,
                value: None,
            },
        };
        params.push(param);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: Option<&str>) -> Param {
        Param {
            key: k.into(),
            value: v.map(Into::into),
        }
    }

    #[test]
    fn splits_on_any_whitespace_and_keeps_order() {
        let p = tokenize("  console=ttyS0\tquiet\n ze.port=8080 ");
        assert_eq!(
            p,
            vec![
                kv("console", Some("ttyS0")),
                kv("quiet", None),
                kv("ze.port", Some("8080"))
            ]
        );
    }

    #[test]
    fn quotes_around_value_or_whole_param_are_removed() {
        let p = tokenize(r#"a="x y" "b=z w" c=""#);
        assert_eq!(
            p,
            vec![
                kv("a", Some("x y")),
                kv("b", Some("z w")),
                kv("c", Some(""))
            ]
        );
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let p = tokenize("ze.rescue-auth=$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA");
        assert_eq!(p[0].key, "ze.rescue-auth");
        assert_eq!(
            p[0].value.as_deref(),
            Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA")
        );
    }

    #[test]
    fn double_dash_ends_kernel_parameters() {
        let p = tokenize("ze.port=1 -- ze.port=2");
        assert_eq!(p, vec![kv("ze.port", Some("1"))]);
    }

    #[test]
    fn empty_line_has_no_params() {
        assert!(tokenize("   \n").is_empty());
    }
}
