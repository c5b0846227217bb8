//! Strict JSON for signed claims and footers: RFC 8259 under the I-JSON rules (RFC 7493) that
//! matter when two readers must agree on signed bytes. The same rules as the server's verifier:
//! duplicate keys, integers outside ±(2^53−1), numbers whose integer-ness changes as a double,
//! non-finite numbers, the key `__proto__`, lone surrogates and nesting deeper than 64 are refused.

use serde_json::{Map, Number, Value};

/// Nesting limit: claims are flat; the limit stops `[[[[…` from exhausting the stack.
pub const MAX_JSON_DEPTH: usize = 64;
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Parses `text` strictly. The error names the byte offset and the rule broken.
pub fn parse_strict_json(text: &str) -> Result<Value, String> {
    let mut p = Parser { src: text.as_bytes(), pos: 0 };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.src.len() {
        return Err(p.err("unexpected data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> String {
        format!("{} at offset {}", what, self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, String> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_JSON_DEPTH {
            return Err(self.err("nesting deeper than 64"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end of JSON")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let at = self.pos;
            let key = self.string()?;
            if key == "__proto__" {
                self.pos = at;
                return Err(self.err("the key __proto__ is refused"));
            }
            if map.contains_key(&key) {
                self.pos = at;
                return Err(self.err(&format!("duplicate key {:?}", key)));
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            map.insert(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.peek().ok_or_else(|| self.err("invalid \\u escape"))?;
            let d = (c as char).to_digit(16).ok_or_else(|| self.err("invalid \\u escape, expected 4 hex digits"))?;
            v = (v << 4) | d;
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is a &str, so these bytes are valid UTF-8 (no lone surrogates either).
            out.push_str(std::str::from_utf8(&self.src[start..self.pos]).map_err(|_| self.err("invalid UTF-8"))?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let ch = if (0xdc00..=0xdfff).contains(&unit) {
                                return Err(self.err("lone low surrogate escape in a string"));
                            } else if (0xd800..=0xdbff).contains(&unit) {
                                if self.src.get(self.pos) != Some(&b'\\') || self.src.get(self.pos + 1) != Some(&b'u') {
                                    return Err(self.err("high surrogate escape not followed by a low surrogate escape"));
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..=0xdfff).contains(&low) {
                                    return Err(self.err("high surrogate escape not followed by a low surrogate escape"));
                                }
                                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                            } else {
                                unit
                            };
                            out.push(char::from_u32(ch).ok_or_else(|| self.err("invalid \\u escape"))?);
                        }
                        _ => return Err(self.err("invalid escape sequence in a string")),
                    }
                }
                Some(_) => return Err(self.err("control character in a string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(c) if c.is_ascii_digit() => {
                self.digits();
            }
            _ => return Err(self.err("invalid number, expected a digit")),
        }
        let int_end = self.pos;
        let mut frac_end = self.pos;
        let mut simple = true;
        if self.peek() == Some(b'.') {
            simple = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number, expected a digit after '.'"));
            }
            frac_end = self.pos;
        }
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e') | Some(b'E')) {
            simple = false;
            self.pos += 1;
            let sign_at = self.pos;
            if matches!(self.peek(), Some(b'+') | Some(b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number, expected a digit in the exponent"));
            }
            let text = std::str::from_utf8(&self.src[sign_at..self.pos]).unwrap_or("0");
            exponent = text.parse::<i64>().unwrap_or(if text.starts_with('-') { i64::MIN / 2 } else { i64::MAX / 2 });
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).map_err(|_| self.err("invalid number"))?;
        let value: f64 = text.parse().map_err(|_| self.err("invalid number"))?;
        let unsafe_int = || format!("integer {} is outside the safe range ±(2^53-1) at offset {}", text, start);
        if simple {
            if value.abs() > MAX_SAFE_INTEGER {
                return Err(unsafe_int());
            }
            return Ok(Value::Number(Number::from(text.parse::<i64>().map_err(|_| unsafe_int())?)));
        }
        if !value.is_finite() {
            return Err(format!("number {} is too large for a double at offset {}", text, start));
        }
        let literal_is_integer = {
            // Last non-zero digit, the fraction first, then the integer part.
            let frac_start = int_end + 1;
            let mut answer = None;
            let mut i = frac_end;
            while i > frac_start {
                i -= 1;
                if self.src[i] != b'0' {
                    answer = Some(exponent - (i - frac_start + 1) as i64 >= 0);
                    break;
                }
            }
            if answer.is_none() {
                let mut i = int_end;
                while i > int_start {
                    i -= 1;
                    if self.src[i] != b'0' {
                        answer = Some(exponent + (int_end - 1 - i) as i64 >= 0);
                        break;
                    }
                }
            }
            answer.unwrap_or(true)
        };
        let is_integer = value.fract() == 0.0;
        if literal_is_integer {
            if value.abs() > MAX_SAFE_INTEGER {
                return Err(unsafe_int());
            }
        } else if is_integer {
            return Err(format!("number {} loses precision as a double (it reads back as {}) at offset {}", text, value, start));
        }
        Number::from_f64(value).map(Value::Number).ok_or_else(|| self.err("invalid number"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_strict_json;

    #[test]
    fn refuses_what_a_lenient_parser_accepts() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"b":1,"b":1}}"#,
            r#"{"__proto__":{}}"#,
            "9007199254740992",
            "-9007199254740992",
            "1e400",
            "1.0000000000000000001",
            "9007199254740993.0",
            r#""\udc00""#,
            r#""\ud800x""#,
            "[1,]",
            "01",
            "{\"a\":1} x",
        ] {
            assert!(parse_strict_json(bad).is_err(), "accepted {}", bad);
        }
        let deep = "[".repeat(70) + &"]".repeat(70);
        assert!(parse_strict_json(&deep).is_err());
    }

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict_json(r#"{"a":[1,-2,3.5,1e2,"\u00e9\ud83d\ude00",true,null],"b":9007199254740991}"#).unwrap();
        assert_eq!(v["b"], 9007199254740991i64);
        assert_eq!(v["a"][4], "é😀");
        assert_eq!(v["a"][3], 100.0);
    }
}
