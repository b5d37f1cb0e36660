-- Each processed scan's full-decode check, one row per scan.
{{ stage('scan_integrity') }}
