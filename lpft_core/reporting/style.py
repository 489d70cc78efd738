"""The stylesheet of every job report, apart from the report's code (which draws with
matplotlib) so that the API can allow exactly this inline style in the console's
Content-Security-Policy, by its hash, without importing a plotting stack."""

REPORT_STYLESHEET = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:4px 8px;text-align:right}th{background:#f4f4f4}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
)
