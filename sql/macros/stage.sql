{#- A staging model: the lake table's columns cast to their declared types.

    The columns and types are declared once, in Python (base/schemas.py), and reach dbt as the
    `lake_schemas` variable that the Dagster dbt step passes to `dbt build`; nothing here repeats
    them. `dbt parse` (no variables) only needs the source reference. -#}
{% macro stage(table) -%}
{%- set columns = var('lake_schemas', {}).get(table) -%}
{%- if execute and not columns -%}
{{ exceptions.raise_compiler_error("no schema for lake table '" ~ table ~ "': build the store through metorigin (it passes --vars lake_schemas)") }}
{%- endif -%}
select
{%- for column in (columns or []) %}
    cast({{ adapter.quote(column[0]) }} as {{ column[1] }}) as {{ adapter.quote(column[0]) }}{{ "," if not loop.last }}
{%- endfor %}
{%- if not columns %} *{% endif %}
from {{ source('lake', table) }}
{%- endmacro %}
