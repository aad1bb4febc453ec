//! The CSV exports ops import by hand: stock levels from the ERP (all or nothing) and
//! shipment notices (line by line). Pure functions: text in, rows or errors out, each error
//! naming the spreadsheet line and the column as headed in the file.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use flagsync_market::LineSerials;
use flagsync_market::time::BEIJING;

use crate::types::SkuLevel;

/// One problem in a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line in the file, as a spreadsheet numbers rows (the header is line 1).
    pub line: usize,
    /// The column's header as written in the file (empty when the whole line is at fault).
    pub column: String,
    pub message: String,
}

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for CsvError {}

/// Every problem found in a file, displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvErrors(pub Vec<CsvError>);

impl std::fmt::Display for CsvErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CsvErrors {}

/// A shipment read from a CSV line: a notice without the operator's sequence, notice id or
/// stock watermark, which a hand-made file cannot know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRow {
    /// The file line it came from.
    pub line: usize,
    pub store_id: String,
    pub order_id: String,
    /// Lines in this package; empty = the whole order.
    pub line_ids: Vec<String>,
    pub carrier: String,
    pub waybill: String,
    pub serials: Vec<LineSerials>,
    pub shipped_at: DateTime<Utc>,
}

/// A column the importer knows: its canonical name and the headers accepted for it.
struct Column {
    name: &'static str,
    headers: &'static [&'static str],
    required: bool,
}

const STOCK_COLUMNS: &[Column] = &[
    Column { name: "sku", headers: &["sku", "商家编码"], required: true },
    Column { name: "warehouse", headers: &["warehouse", "仓库"], required: true },
    Column { name: "on_hand", headers: &["on_hand", "库存"], required: true },
];

const SHIPMENT_COLUMNS: &[Column] = &[
    Column { name: "store", headers: &["store", "store_id"], required: true },
    Column { name: "order_id", headers: &["order_id"], required: true },
    Column { name: "carrier", headers: &["carrier"], required: true },
    Column { name: "waybill", headers: &["waybill"], required: true },
    Column { name: "lines", headers: &["lines", "line_ids"], required: false },
    Column { name: "imeis", headers: &["imeis", "serials"], required: false },
    Column { name: "shipped_at", headers: &["shipped_at"], required: true },
];

/// A data line: its number and its fields.
struct Row {
    line: usize,
    fields: Vec<String>,
}

/// Where each known column sits: canonical name -> (index, header as written).
struct Header {
    columns: HashMap<&'static str, (usize, String)>,
}

impl Header {
    fn get<'a>(&self, row: &'a Row, name: &str) -> &'a str {
        self.columns.get(name).and_then(|(index, _)| row.fields.get(*index)).map_or("", |value| value.trim())
    }

    fn error(&self, line: usize, name: &str, message: impl Into<String>) -> CsvError {
        let column = self.columns.get(name).map_or_else(|| name.to_string(), |(_, header)| header.clone());
        CsvError { line, column, message: message.into() }
    }
}

fn normalise(header: &str) -> String {
    header.trim().to_lowercase().replace([' ', '-'], "_")
}

/// Splits the text into the header and the data rows; rows of blank fields are skipped
/// (spreadsheets leave `,,` lines at the end). A file-level problem ends the read.
fn read(text: &str, known: &[Column]) -> Result<(Header, Vec<Row>), Vec<CsvError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader =
        ::csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line() as usize);
                let fields: Vec<String> = record.iter().map(str::to_string).collect();
                if fields.iter().any(|f| !f.trim().is_empty()) {
                    records.push(Row { line, fields });
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                return Err(vec![CsvError {
                    line,
                    column: String::new(),
                    message: format!("unreadable csv: {e}"),
                }]);
            }
        }
    }
    let mut rows = records.into_iter();
    let Some(header_row) = rows.next() else {
        return Err(vec![CsvError {
            line: 1,
            column: String::new(),
            message: "the file is empty: a header row is required".into(),
        }]);
    };
    let mut errors = Vec::new();
    let mut columns: HashMap<&'static str, (usize, String)> = HashMap::new();
    for (index, written) in header_row.fields.iter().enumerate() {
        let name = normalise(written);
        let Some(column) = known.iter().find(|c| c.headers.iter().any(|h| normalise(h) == name)) else {
            continue;
        };
        if let Some((_, first)) = columns.get(column.name) {
            errors.push(CsvError {
                line: header_row.line,
                column: written.trim().to_string(),
                message: format!("column {} appears twice (also headed {first:?})", column.name),
            });
            continue;
        }
        columns.insert(column.name, (index, written.trim().to_string()));
    }
    for column in known.iter().filter(|c| c.required && !columns.contains_key(c.name)) {
        errors.push(CsvError {
            line: header_row.line,
            column: column.name.to_string(),
            message: format!("missing column (headed one of {})", column.headers.join(", ")),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((Header { columns }, rows.collect()))
}

/// A non-negative whole number; `12.00` counts (some ERPs print quantities so).
fn parse_count(text: &str) -> Result<i64, String> {
    if text.is_empty() {
        return Err("missing value".into());
    }
    let whole = match text.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return Err(format!("{text:?} is not a whole number")),
        None => text,
    };
    match whole.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("{text} is negative")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Parses an ERP stock export. Columns `sku`, `warehouse`, `on_hand` (or `商家编码`, `仓库`,
/// `库存`) in any order, headers case-insensitive, other columns ignored, a UTF-8 BOM
/// tolerated. Every problem is reported; with any problem nothing is returned, so the caller
/// applies nothing from the file.
pub fn parse_stock_csv(text: &str) -> Result<Vec<SkuLevel>, CsvErrors> {
    let (header, rows) = read(text, STOCK_COLUMNS).map_err(CsvErrors)?;
    let mut errors = Vec::new();
    let mut levels = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for row in &rows {
        let sku = header.get(row, "sku");
        let warehouse = header.get(row, "warehouse");
        let mut ok = true;
        if sku.is_empty() {
            errors.push(header.error(row.line, "sku", "missing value"));
            ok = false;
        }
        if warehouse.is_empty() {
            errors.push(header.error(row.line, "warehouse", "missing value"));
            ok = false;
        }
        let on_hand = match parse_count(header.get(row, "on_hand")) {
            Ok(n) => n,
            Err(message) => {
                errors.push(header.error(row.line, "on_hand", message));
                ok = false;
                0
            }
        };
        if !sku.is_empty() && !warehouse.is_empty() {
            if let Some(first) = seen.get(&(sku.to_string(), warehouse.to_string())) {
                errors.push(header.error(
                    row.line,
                    "sku",
                    format!("sku {sku} in warehouse {warehouse} already given on line {first}"),
                ));
                ok = false;
            } else {
                seen.insert((sku.to_string(), warehouse.to_string()), row.line);
            }
        }
        if ok {
            levels.push(SkuLevel { sku: sku.to_string(), warehouse: warehouse.to_string(), on_hand });
        }
    }
    if rows.is_empty() {
        errors.push(CsvError {
            line: 2,
            column: String::new(),
            message: "no data rows below the header".into(),
        });
    }
    if errors.is_empty() { Ok(levels) } else { Err(CsvErrors(errors)) }
}

/// `YYYY-MM-DD HH:MM:SS` as Beijing time, or RFC 3339 with its own offset.
fn parse_shipped_at(text: &str) -> Result<DateTime<Utc>, String> {
    // chrono's %Y accepts a sign: a stray minus would mean a year BC.
    if !text.trim().is_empty() && !text.trim().starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{:?} is not a time (YYYY-MM-DD HH:MM:SS Beijing, or RFC 3339)", text.trim()));
    }
    if text.is_empty() {
        return Err("missing value".into());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        && let Some(at) = BEIJING.from_local_datetime(&naive).single()
    {
        return Ok(at.with_timezone(&Utc));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is neither beijing time (YYYY-MM-DD HH:MM:SS) nor rfc 3339"))
}

/// Parses a shipments export: columns `store`, `order_id`, `carrier`, `waybill`,
/// `shipped_at`, and optionally `lines` (`;`-separated line ids, empty = whole order) and
/// `imeis` (`line:imei;line:imei`). Each line stands alone: good lines come back, bad lines
/// are reported (a header problem reports the file and returns nothing).
pub fn parse_shipments_csv(text: &str) -> (Vec<ShipmentRow>, Vec<CsvError>) {
    let (header, rows) = match read(text, SHIPMENT_COLUMNS) {
        Ok(read) => read,
        Err(errors) => return (Vec::new(), errors),
    };
    let mut good = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for row in &rows {
        let before = errors.len();
        let mut required = |name: &str| {
            let value = header.get(row, name);
            if value.is_empty() {
                errors.push(header.error(row.line, name, "missing value"));
            }
            value.to_string()
        };
        let store_id = required("store");
        let order_id = required("order_id");
        let carrier = required("carrier");
        let waybill = required("waybill");
        let mut line_ids: Vec<String> = Vec::new();
        for id in header.get(row, "lines").split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if line_ids.iter().any(|l| l == id) {
                errors.push(header.error(row.line, "lines", format!("line {id} listed twice")));
            } else {
                line_ids.push(id.to_string());
            }
        }
        let mut serials: Vec<LineSerials> = Vec::new();
        let mut imeis_seen: Vec<&str> = Vec::new();
        for piece in header.get(row, "imeis").split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((line_id, imei)) = piece
                .split_once(':')
                .map(|(l, i)| (l.trim(), i.trim()))
                .filter(|(l, i)| !l.is_empty() && !i.is_empty())
            else {
                errors.push(header.error(row.line, "imeis", format!("{piece:?} is not line:imei")));
                continue;
            };
            if !line_ids.is_empty() && !line_ids.iter().any(|l| l == line_id) {
                errors.push(header.error(
                    row.line,
                    "imeis",
                    format!("line {line_id} is not among this row's lines"),
                ));
                continue;
            }
            if imeis_seen.contains(&imei) {
                errors.push(header.error(row.line, "imeis", format!("imei {imei} listed twice")));
                continue;
            }
            imeis_seen.push(imei);
            match serials.iter_mut().find(|s| s.line_id == line_id) {
                Some(entry) => entry.serials.push(imei.to_string()),
                None => serials
                    .push(LineSerials { line_id: line_id.to_string(), serials: vec![imei.to_string()] }),
            }
        }
        let shipped_at = match parse_shipped_at(header.get(row, "shipped_at")) {
            Ok(at) => Some(at),
            Err(message) => {
                errors.push(header.error(row.line, "shipped_at", message));
                None
            }
        };
        if !waybill.is_empty() {
            let key = (store_id.clone(), order_id.clone(), waybill.clone());
            if let Some(first) = seen.get(&key) {
                errors.push(header.error(
                    row.line,
                    "waybill",
                    format!("order {order_id} waybill {waybill} already given on line {first}"),
                ));
            } else {
                seen.insert(key, row.line);
            }
        }
        if let (Some(shipped_at), true) = (shipped_at, errors.len() == before) {
            good.push(ShipmentRow {
                line: row.line,
                store_id,
                order_id,
                line_ids,
                carrier,
                waybill,
                serials,
                shipped_at,
            });
        }
    }
    (good, errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../tests/fixtures/operator/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn level(sku: &str, warehouse: &str, on_hand: i64) -> SkuLevel {
        SkuLevel { sku: sku.into(), warehouse: warehouse.into(), on_hand }
    }

    #[test]
    fn reads_an_erp_export_with_bom_mixed_case_headers_quotes_and_extra_columns() {
        let levels = parse_stock_csv(&fixture("stock_good.csv")).unwrap();
        assert_eq!(
            levels,
            vec![
                level("IPH16-128-BLK", "WH-HZ", 120),
                level("IPH16-128-BLK", "WH-SH", 0),
                level("MATE70-256,GLD", "WH-HZ", 35),
                level("PLAN-5G-199", "WH-HZ", 12),
            ]
        );
    }

    #[test]
    fn accepts_the_chinese_headers() {
        let levels = parse_stock_csv(&fixture("stock_good_zh.csv")).unwrap();
        assert_eq!(levels, vec![level("IPH16-128-BLK", "杭州仓", 7), level("NUM-POOL-571", "杭州仓", 300)]);
    }

    #[test]
    fn reports_every_bad_row_with_line_and_column_and_returns_nothing() {
        let errors = parse_stock_csv(&fixture("stock_bad.csv")).unwrap_err();
        let found: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "On_Hand"),
                (4, "On_Hand"),
                (5, "SKU"),
                (6, "Warehouse"),
                (7, "SKU"),
                (8, "On_Hand"),
                (10, "On_Hand")
            ]
        );
        let text = errors.to_string();
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(text.contains("line 3, column On_Hand: -4 is negative"), "{text}");
        assert!(text.contains("line 4, column On_Hand: \"2.5\" is not a whole number"), "{text}");
        assert!(
            text.contains("line 7, column SKU: sku IPH16-128-BLK in warehouse WH-HZ already given on line 2"),
            "{text}"
        );
        assert!(text.contains("line 10, column On_Hand: \"lots\""), "{text}");
    }

    #[test]
    fn a_missing_column_or_an_empty_file_is_a_line_1_error() {
        let errors = parse_stock_csv(&fixture("stock_missing_column.csv")).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!((errors.0[0].line, errors.0[0].column.as_str()), (1, "on_hand"));
        let errors = parse_stock_csv("\u{feff}").unwrap_err();
        assert_eq!(errors.0[0].line, 1);
        let errors = parse_stock_csv("sku,warehouse,on_hand\n").unwrap_err();
        assert!(errors.to_string().contains("no data rows"), "{errors}");
        let errors = parse_stock_csv("sku,商家编码,warehouse,on_hand\nA,A,W,1\n").unwrap_err();
        assert!(errors.to_string().contains("appears twice"), "{errors}");
    }

    #[test]
    fn whole_numbers_may_carry_zero_decimals() {
        assert_eq!(parse_count("12.00"), Ok(12));
        assert_eq!(parse_count("0"), Ok(0));
        assert!(parse_count("12.01").is_err());
        assert!(parse_count("1e3").is_err());
        assert!(parse_count("").is_err());
    }

    #[test]
    fn shipments_keep_good_lines_and_report_bad_ones() {
        let (rows, errors) = parse_shipments_csv(&fixture("shipments.csv"));
        let good: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(good, vec![2, 3, 4]);
        let first = &rows[0];
        assert_eq!(first.store_id, "tmall-flagship");
        assert_eq!(first.line_ids, Vec::<String>::new());
        assert_eq!(
            first.serials,
            vec![LineSerials {
                line_id: "4012345678901234568".into(),
                serials: vec!["356938035643809".into()]
            }]
        );
        assert_eq!(first.shipped_at, DateTime::parse_from_rfc3339("2026-11-11T00:30:00+08:00").unwrap());
        let second = &rows[1];
        assert_eq!(second.line_ids, vec!["L1".to_string(), "L2".to_string()]);
        assert_eq!(second.serials.len(), 2);
        assert_eq!(
            second.serials[0].serials,
            vec!["356938035643817".to_string(), "356938035643825".to_string()]
        );
        assert_eq!(rows[2].shipped_at, DateTime::parse_from_rfc3339("2026-11-11T01:00:00Z").unwrap());

        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (5, "waybill"),
                (6, "shipped_at"),
                (7, "imeis"),
                (8, "imeis"),
                (9, "waybill"),
                (10, "lines")
            ]
        );
        assert!(errors[2].message.contains("not line:imei"), "{:?}", errors[2]);
        assert!(errors[3].message.contains("not among this row's lines"), "{:?}", errors[3]);
        assert!(errors[4].message.contains("already given on line 2"), "{:?}", errors[4]);
    }

    #[test]
    fn a_shipments_file_without_required_columns_returns_nothing() {
        let (rows, errors) = parse_shipments_csv("store,order_id,carrier\nS,1,SF\n");
        assert!(rows.is_empty());
        let columns: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, vec!["waybill", "shipped_at"]);
    }
}
