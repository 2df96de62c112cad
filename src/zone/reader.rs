//! The master-file reader (RFC 1035 §5): text to records in wire form, one at a time.
//!
//! Nothing here builds a record object: each record is handed to the caller as its owner
//! and RDATA in wire form, in buffers the reader reuses, so reading a zone costs one pass
//! over its bytes and no allocation per record.
//!
//! Covered: `$ORIGIN`, `$TTL`, `$INCLUDE file [origin]` (relative to the including file's
//! directory), `@`, relative names, a blank owner meaning the previous one, TTL and class
//! in either order, TTL units (`1h30m`), parentheses, comments, quoted strings, `\X` and
//! `\DDD` escapes in names and strings, `TYPEnnn`/`CLASSnnn` and the RFC 3597 generic
//! RDATA `\# len hex` for any type (checked against the layout of a known type).
//!
//! What Knot refuses is refused here too: a quoted string over two lines or glued to the
//! next word, nested parentheses, a byte order mark, a sign before a number. An included
//! file's `$ORIGIN`, `$TTL` and owner end with it, and a class applies to its own record.

use std::path::{Path, PathBuf};

use super::rdata;

/// `$INCLUDE`s nest at most this deep (a file including itself stops here).
const MAX_INCLUDE_DEPTH: usize = 16;

/// One record as read: owner and RDATA in wire form, names in RDATA as written (case kept).
pub struct Record<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

/// Where a record's statement starts: the file (an included one, maybe) and its line.
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    pub path: &'a Path,
    pub line: usize,
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError<E> {
    /// A statement is not valid master-file syntax, or its data not valid for its type.
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An `$INCLUDE`d file cannot be read.
    Include {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The sink refused a record.
    Sink(E),
}

/// A token of a statement: its raw bytes (escapes still in), quoted or not.
#[derive(Clone, Copy)]
pub struct Token {
    start: usize,
    end: usize,
    pub quoted: bool,
}

impl Token {
    pub fn text<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        &text[self.start..self.end]
    }
}

/// Splits text into statements: the tokens up to a newline outside parentheses.
struct Lexer<'t> {
    text: &'t [u8],
    pos: usize,
    line: usize,
}

/// A statement's first line, and whether it starts with blank space (no owner).
struct Statement {
    line: usize,
    blank_owner: bool,
}

impl Lexer<'_> {
    /// The next statement, its tokens in `tokens`; `None` at the end of the text.
    fn next(&mut self, tokens: &mut Vec<Token>) -> Result<Option<Statement>, (usize, String)> {
        let text = self.text;
        tokens.clear();
        let mut depth = 0usize;
        let mut statement = Statement {
            line: self.line,
            blank_owner: false,
        };
        // Whether nothing but newlines came since the last statement: a token found then
        // is in column 0, an owner name.
        let mut line_start = true;
        while let Some(&c) = text.get(self.pos) {
            let (line, start) = (self.line, self.pos);
            let token = match c {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if depth == 0 {
                        if !tokens.is_empty() {
                            return Ok(Some(statement));
                        }
                        line_start = true;
                    }
                    continue;
                }
                b' ' | b'\t' | b'\r' => {
                    self.pos += 1;
                    None
                }
                b';' => {
                    self.pos += text[start..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .unwrap_or(text.len() - start);
                    None
                }
                b'(' => {
                    // As Knot and NSD: one level only, a '(' inside is a typo.
                    if depth > 0 {
                        return Err((
                            line,
                            "nested '(': a statement has one pair of parentheses".into(),
                        ));
                    }
                    depth += 1;
                    self.pos += 1;
                    None
                }
                b')' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or((line, "')' without '('".into()))?;
                    self.pos += 1;
                    None
                }
                b'"' => {
                    let mut i = start + 1;
                    while i < text.len() && text[i] != b'"' {
                        if text[i] == b'\\' {
                            i += 1;
                        }
                        // Knot refuses a quoted string over two lines, escaped or not: a
                        // missing closing quote would otherwise swallow the next records.
                        if text.get(i) == Some(&b'\n') {
                            return Err((line, "a quoted string does not end on its line".into()));
                        }
                        i += 1;
                    }
                    if i >= text.len() {
                        return Err((line, "unterminated quoted string".into()));
                    }
                    self.pos = i + 1;
                    // `"a"b` and `"a""b"` are one typo, not two strings (Knot refuses them).
                    if text.get(self.pos).is_some_and(|c| {
                        !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')')
                    }) {
                        return Err((line, "a quoted string must be followed by a blank".into()));
                    }
                    Some((start + 1, i, true))
                }
                _ => {
                    let mut i = start;
                    while i < text.len()
                        && !matches!(
                            text[i],
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"'
                        )
                    {
                        // An escaped byte is part of the word, whatever it is.
                        if text[i] == b'\\' {
                            i += 1;
                            if text.get(i) == Some(&b'\n') {
                                self.line += 1;
                            }
                        }
                        i += 1;
                    }
                    self.pos = i.min(text.len());
                    if text.get(self.pos) == Some(&b'"') {
                        return Err((line, "a quote in the middle of a word: put a blank before it, or escape it as \\\"".into()));
                    }
                    Some((start, self.pos, false))
                }
            };
            if let Some((start, end, quoted)) = token {
                if tokens.is_empty() {
                    statement = Statement {
                        line,
                        blank_owner: !line_start,
                    };
                }
                tokens.push(Token { start, end, quoted });
            }
            line_start = false;
        }
        if depth > 0 {
            return Err((statement.line, "'(' without ')'".into()));
        }
        Ok((!tokens.is_empty()).then_some(statement))
    }
}

/// The state carried from statement to statement (RFC 1035 §5.1).
struct Context {
    /// The current origin, wire form.
    origin: Vec<u8>,
    /// The previous record's owner, for a statement that starts with blank space.
    owner: Vec<u8>,
    /// `$TTL`, and the last TTL given explicitly (RFC 2308 §4 and the older convention).
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
}

/// The sink records go to; an error it returns stops the reading.
pub type Sink<'s, E> = dyn FnMut(&Record, Position) -> Result<(), E> + 's;

/// Reads the zone text `text` of the file `path` (used for `$INCLUDE` and positions),
/// with `origin` (wire form) as the initial origin, and hands each record to `sink`.
pub fn read<E>(
    text: &[u8],
    path: &Path,
    origin: &[u8],
    sink: &mut Sink<E>,
) -> Result<(), ReadError<E>> {
    let mut cx = Context {
        origin: origin.to_vec(),
        owner: Vec::new(),
        default_ttl: None,
        last_ttl: None,
    };
    read_file(text, path, &mut cx, sink, 0)
}

fn read_file<E>(
    text: &[u8],
    path: &Path,
    cx: &mut Context,
    sink: &mut Sink<E>,
    depth: usize,
) -> Result<(), ReadError<E>> {
    let syntax = |line, message| ReadError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    // Knot and NSD read a byte order mark as part of the first owner name: refuse it
    // with the reason rather than serve a name nobody asks for.
    if text.starts_with(b"\xEF\xBB\xBF") {
        return Err(syntax(
            1,
            "the file starts with a UTF-8 byte order mark (EF BB BF): save it without one".into(),
        ));
    }
    let mut lexer = Lexer {
        text,
        pos: 0,
        line: 1,
    };
    // Buffers reused by every statement.
    let (mut tokens, mut rdata, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(statement) = lexer
        .next(&mut tokens)
        .map_err(|(line, message)| syntax(line, message))?
    {
        let line = statement.line;
        if !statement.blank_owner && tokens[0].text(text).starts_with(b"$") {
            directive(text, &tokens, path, cx, sink, depth).map_err(|e| match e {
                Directive::Syntax(message) => syntax(line, message),
                Directive::Nested(e) => e,
            })?;
            continue;
        }
        let record = statement_record(text, &tokens, &statement, cx, &mut rdata, &mut scratch)
            .map_err(|message| syntax(line, message))?;
        sink(&record, Position { path, line }).map_err(ReadError::Sink)?;
    }
    Ok(())
}

enum Directive<E> {
    Syntax(String),
    Nested(ReadError<E>),
}

/// `$ORIGIN`, `$TTL` or `$INCLUDE` (RFC 1035 §5.1, RFC 2308 §4).
fn directive<E>(
    text: &[u8],
    tokens: &[Token],
    path: &Path,
    cx: &mut Context,
    sink: &mut Sink<E>,
    depth: usize,
) -> Result<(), Directive<E>> {
    let word = tokens[0].text(text);
    let args = &tokens[1..];
    let syntax = |m: String| Directive::Syntax(m);
    if word.eq_ignore_ascii_case(b"$ORIGIN") {
        let [name] = args else {
            return Err(syntax("$ORIGIN takes one name".into()));
        };
        let mut origin = Vec::new();
        rdata::name(name.text(text), &cx.origin, &mut origin).map_err(syntax)?;
        cx.origin = origin;
    } else if word.eq_ignore_ascii_case(b"$TTL") {
        let [ttl] = args else {
            return Err(syntax("$TTL takes one TTL".into()));
        };
        cx.default_ttl = Some(rdata::ttl(ttl.text(text)).map_err(syntax)?);
    } else if word.eq_ignore_ascii_case(b"$INCLUDE") {
        let (file, origin) = match args {
            [file] => (file, None),
            [file, origin] => (file, Some(origin)),
            _ => {
                return Err(syntax(
                    "$INCLUDE takes a file name and an optional origin".into(),
                ));
            }
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(syntax(format!(
                "$INCLUDE nests deeper than {MAX_INCLUDE_DEPTH} files"
            )));
        }
        let mut name = Vec::new();
        rdata::unescape(file.text(text), &mut name).map_err(syntax)?;
        let name = String::from_utf8(name)
            .map_err(|_| syntax("the $INCLUDE file name is not UTF-8".into()))?;
        // As hickory did: relative to the including file's directory, or absolute.
        let included = path.parent().unwrap_or(Path::new(".")).join(name);
        let bytes = super::read_file(&included).map_err(|source| {
            Directive::Nested(ReadError::Include {
                path: included.clone(),
                source,
            })
        })?;
        // The included file starts from the given origin, and the including file's
        // origin is back in force after it (RFC 1035 §5.1); so are its $TTL, last TTL
        // and owner, as Knot reads an included file with a scanner of its own.
        let saved = (
            cx.origin.clone(),
            cx.owner.clone(),
            cx.default_ttl,
            cx.last_ttl,
        );
        if let Some(origin) = origin {
            let mut wire = Vec::new();
            rdata::name(origin.text(text), &cx.origin, &mut wire).map_err(syntax)?;
            cx.origin = wire;
        }
        let result = read_file(&bytes, &included, cx, sink, depth + 1);
        (cx.origin, cx.owner, cx.default_ttl, cx.last_ttl) = saved;
        result.map_err(Directive::Nested)?;
    } else {
        return Err(syntax(format!(
            "unknown directive {}",
            String::from_utf8_lossy(word)
        )));
    }
    Ok(())
}

/// One record statement: `[owner] [ttl] [class] type rdata` (TTL and class either way).
fn statement_record<'c>(
    text: &[u8],
    tokens: &[Token],
    statement: &Statement,
    cx: &'c mut Context,
    rdata: &'c mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<Record<'c>, String> {
    let mut rest = tokens;
    if !statement.blank_owner {
        let owner = rest[0];
        if owner.quoted {
            return Err("an owner name cannot be quoted".into());
        }
        let mut wire = std::mem::take(&mut cx.owner);
        wire.clear();
        rdata::name(owner.text(text), &cx.origin, &mut wire)?;
        cx.owner = wire;
        rest = &rest[1..];
    } else if cx.owner.is_empty() {
        return Err("the first record has no owner name".into());
    }
    let mut ttl = None;
    let mut class = None;
    let rtype = loop {
        let Some((token, more)) = rest.split_first() else {
            return Err("no record type".into());
        };
        rest = more;
        let word = token.text(text);
        if ttl.is_none() && word.first().is_some_and(u8::is_ascii_digit) {
            ttl = Some(rdata::ttl(word)?);
        } else if let (None, Some(c)) = (class, rdata::class(word)) {
            class = Some(c);
        } else {
            break rdata::type_code(word)?;
        }
    };
    let ttl = match ttl {
        Some(ttl) => {
            cx.last_ttl = Some(ttl);
            ttl
        }
        None => cx
            .default_ttl
            .or(cx.last_ttl)
            .ok_or("the record has no TTL and there is no $TTL before it")?,
    };
    rdata.clear();
    rdata::rdata(rtype, text, rest, &cx.origin, rdata, scratch)?;
    if rdata.len() > usize::from(u16::MAX) {
        return Err("the RDATA is longer than 65535 bytes".into());
    }
    Ok(Record {
        owner: &cx.owner,
        rtype,
        // A class applies to its own record only: Knot takes IN for the next ones.
        class: class.unwrap_or(1),
        ttl,
        rdata,
    })
}
