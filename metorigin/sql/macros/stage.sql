{#- A staging model: the lake table's columns cast to their declared types.

    The columns and types are declared once, in Python (base/schemas.py), and reach dbt as the
    `lake_schemas` variable that the Dagster dbt step passes to `dbt build`; nothing here repeats
    them. `dbt parse` (no variables) only needs the source reference. A lake table with no file yet
    (a store older than the asset that writes it, e.g. `scan_predictions`) stages as an empty table
    of the declared columns: DuckDB's read_parquet refuses a pattern that matches no file. A column
    declared since the files were written (the registry's `removed`) stages as null until they
    are written again. -#}
{% macro stage(table) -%}
{%- set columns = var('lake_schemas', {}).get(table) -%}
{%- if execute and not columns -%}
{{ exceptions.raise_compiler_error("no schema for lake table '" ~ table ~ "': build the store through metorigin (it passes --vars lake_schemas)") }}
{%- endif -%}
{%- set files = env_var('METORIGIN_STORE', 'demo/store') ~ '/lake/' ~ table ~ '/*.parquet' -%}
{%- set present = (run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] > 0) if execute else true -%}
{%- set written = (run_query("select column_name from (describe select * from " ~ source('lake', table) ~ ")").columns[0].values() | list) if execute and present else [] -%}
select
{%- for column in (columns or []) %}
    cast({{ adapter.quote(column[0]) if (present and (not execute or column[0] in written)) else 'null' }} as {{ column[1] }}) as {{ adapter.quote(column[0]) }}{{ "," if not loop.last }}
{%- endfor %}
{%- if not columns %} *{% endif %}
{%- if present %}
from {{ source('lake', table) }}
{%- else %}
where false
{%- endif %}
{%- endmacro %}
