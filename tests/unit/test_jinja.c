/* Jinja interpreter and chat module unit tests. The rendering cases'
 * expected outputs were produced by Jinja2 3.1.6 configured as
 * transformers configures it (trim_blocks, lstrip_blocks, loopcontrols,
 * tojson = json.dumps(ensure_ascii=False)); the two tool templates are
 * written in the style of Llama 3.1 and Qwen2.5 templates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "test.h"
#include "tok/chat.h"
#include "tok/jinja.h"

/* Generated from templates whose outputs were checked against Jinja2 3.1.6
 * configured as transformers configures it. */
static const char *const VARS_JSON = "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi there\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nans\"}], \"d\": {\"a\": 1, \"b\": [1, 2], \"c\": null}, \"s\": \"Hello, World\", \"n\": 5, \"f\": 2.5, \"u\": \"h\\u00e9llo w\\u00f6rld\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get\", \"description\": \"Get it\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\"}}}}}]}";
static const struct { const char *src, *want; } CASES[] = {
    {"{{ 1e20 }} {{ 1.0 }} {{ 0.1+0.2 }} {{ [1,\"a\",none,true,1.5] }} {{ {\"a\":(1,2)} }} {{ 7//-2 }} {{ -7 % 3 }} {{ 3/2 }}",
     "1e+20 1.0 0.30000000000000004 [1, 'a', None, True, 1.5] {'a': (1, 2)} -4 2 1.5"},
    {"{{ 1.5e-7 }} {{ 123456789012345678.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 2**10 }} {{ 2**-1 }}",
     "1.5e-07 1.2345678901234568e+17 1e+16 1000000000000000.0 0.0001 1e-05 -0.0 1024 0.5"},
    {"{% for m in messages %}\n"
    "  {% if m.role == 'user' %}\n"
    "    U: {{ m.content }}\n"
    "  {% endif %}\n"
    "{% endfor %}",
     "    U: hi there\n"
    ""},
    {"{%- for m in messages -%}\n"
    "  [{{ m.role }}]\n"
    "{%- endfor %}",
     "[system][user][assistant]"},
    {"a   {%- if true %}  b  {% endif -%}   c",
     "a  b  c"},
    {"  {# comment #}\n"
    "x {#- c -#} y",
     "xy"},
    {"{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 5 %}{% endfor %}{{x}}",
     "111"},
    {"{% set ns = namespace(a=1, b='x') %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }} {{ ns.b }}",
     "4 x"},
    {"{{ messages[::-1] | map(attribute='role') | join(',') }}",
     "assistant,user,system"},
    {"{{ s[1:4] }}|{{ s[-5:] }}|{{ s[::2] }}|{{ s[::-1] }}|{{ u[::-1] }}|{{ u[1:3] }}|{{ u|length }}",
     "ell|World|Hlo ol|dlroW ,olleH|dlr\303\266w oll\303\251h|\303\251l|11"},
    {"{{ s.split(',') }} {{ s.split() }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }}",
     "['Hello', ' World'] ['Hello,', 'World'] ['a', 'b'] ['a', 'b,c'] ['a,b', 'c']"},
    {"{{ s.startswith('He') }} {{ s.endswith(('x','ld')) }} {{ s.lower() }} {{ s.upper() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ s.find('o') }} {{ s.rfind('o') }} {{ s.replace('l','L') }} {{ s.replace('l','L',1) }}",
     "True True hello, world HELLO, WORLD Hello World Hello 4 8 HeLLo, WorLd HeLlo, World"},
    {"{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\nq\\n'.lstrip('\\n') }}",
     "x|x  |  x|a|q\n"
    ""},
    {"{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z', 9) }} {{ d.get('z') }}",
     "[('a', 1), ('b', [1, 2]), ('c', None)] ['a', 'b', 'c'] [1, [1, 2], None] 1 9 None"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
     "a=1;b=[1, 2];c=None;"},
    {"{% for x in [1,2,3,4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}",
     "1/2:2 2/2:4 "},
    {"{% for x in [] %}no{% else %}empty{% endfor %}",
     "empty"},
    {"{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "13|1"},
    {"{% for x in 'abc' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
     "032TrueFalseb;121FalseFalseac;210FalseTrueb;"},
    {"{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 's' is string }} {{ 1 is number }} {{ 1.5 is integer }} {{ 1 is integer }} {{ d is mapping }} {{ [] is iterable }} {{ 's' is sequence }} {{ true is true }} {{ 0 is false }} {{ false is false }}",
     "False True True True True False True True True True True False True"},
    {"{{ 1 is not none }} {{ x is not defined }} {{ 3 is divisibleby 3 }} {{ 3 is odd }} {{ 2 is equalto 2 }} {{ d.a is eq 1 }}",
     "True True True True True True"},
    {"{{ [3,1,2] | sort }} {{ ['b','A','a'] | sort }} {{ [3,1,2] | sort(reverse=true) }} {{ [1,2,1,3] | unique | list }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }}",
     "[1, 2, 3] ['A', 'a', 'b'] [3, 2, 1] [1, 2, 3] [3, 2, 1] cba"},
    {"{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}",
     "['hi there'] ['system', 'assistant']"},
    {"{{ messages | selectattr('role') | list | length }} {{ [0,1,2,none] | select | list }} {{ [1,2,3,4] | reject('odd') | list }}",
     "3 [1, 2] [2, 4]"},
    {"{{ tools | tojson }}",
     "[{\"type\": \"function\", \"function\": {\"name\": \"get\", \"description\": \"Get it\", \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\"}}}}}]"},
    {"{{ tools[0] | tojson(indent=2) }}",
     "{\n"
    "  \"type\": \"function\",\n"
    "  \"function\": {\n"
    "    \"name\": \"get\",\n"
    "    \"description\": \"Get it\",\n"
    "    \"parameters\": {\n"
    "      \"type\": \"object\",\n"
    "      \"properties\": {\n"
    "        \"x\": {\n"
    "          \"type\": \"string\"\n"
    "        }\n"
    "      }\n"
    "    }\n"
    "  }\n"
    "}"},
    {"{{ {'a': '\303\251\"\\n\\t\\\\', 'b': [1, 2.5, true, none], 'c': {}} | tojson }}",
     "{\"a\": \"\303\251\\\"\\n\\t\\\\\", \"b\": [1, 2.5, true, null], \"c\": {}}"},
    {"{{ 'a' ~ 1 ~ none ~ true }} {{ x ~ 'y' }} {{ [1] + [2] }} {{ 'ab' * 3 }} {{ 10 - 3 * 2 }} {{ (10 - 3) * 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}",
     "a1NoneTrue y [1, 2] ababab 4 14 64 4"},
    {"{{ 1 < 2 < 3 }} {{ 1 < 2 > 3 }} {{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 1 in [1,2] }} {{ 'a' in d }} {{ not 1 in [1] }}",
     "True False True True True True False"},
    {"{{ 1 if true else 2 }} {{ 1 if false else 2 }} {{ 'x' if false }}|{{ none or 'd' }} {{ 0 and 1 }} {{ [] or [1] }}",
     "1 2 |d 0 [1]"},
    {"{{ 'abc' | upper }} {{ ' abc ' | trim }} {{ 'abc' | length }} {{ [1,2] | count }} {{ 3.7 | int }} {{ '42' | int }} {{ 'x' | int }} {{ '3.5' | float }} {{ 5 | float }} {{ x | default('dflt') }} {{ '' | default('e', true) }} {{ none | d('n') }}",
     "ABC abc 3 2 3 42 0 3.5 5.0 dflt e None"},
    {"{{ [1,2,3] | first }} {{ [1,2,3] | last }} {{ 'abc' | first }} {{ 'abc' | list }} {{ d | list }} {{ d | items | list }} {{ -3 | abs }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 3.5 | round }} {{ 7 | round }}",
     "1 3 a ['a', 'b', 'c'] ['a', 'b', 'c'] [('a', 1), ('b', [1, 2]), ('c', None)] 3 2.0 3.14 4.0 7"},
    {"{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'a\\n' | indent }}",
     "a\n"
    "    b\n"
    "\n"
    "    c|  a\n"
    "  b|a\n"
    "  \n"
    "  b|a\n"
    ""},
    {"{{ 'hello' | replace('l', 'L') }} {{ 'hello world' | capitalize }} {{ 'hello-world foo' | title }} {{ '<a>' | safe }} {{ [1,2,3] | join('-') }} {{ [1,2,3] | join }} {{ [1,2,3] | sum }} {{ [3,1,2] | min }} {{ [3,1,2] | max }}",
     "heLLo Hello world Hello-World Foo <a> 1-2-3 123 6 1 3"},
    {"{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('A') }} {{ greet('B', 'Hi') }} {{ greet(greeting='Yo', name='C') }}",
     "Hello, A! Hi, B! Yo, C!"},
    {"{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 }}{% endcall %}",
     "<b>inner 2</b>"},
    {"{% set greeting %}Hi {{ s }}{% endset %}[{{ greeting }}]",
     "[Hi Hello, World]"},
    {"{% filter upper %}hello {{ s }}{% endfilter %}",
     "HELLO HELLO, WORLD"},
    {"{{ \"{} and {}\".format(1, 'b') }} {{ \"{0}{1}{0}\".format('a', 'b') }} {{ \"%s-%d\" % ('x', 3) }} {{ \"%s!\" % 'y' }}",
     "1 and b aba x-3 y!"},
    {"{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[5] }} {{ messages[-1].content.split('</think>')[-1].lstrip('\\n') }}",
     "system sys  ans"},
    {"{{ d.c is none }} {{ d.zz is defined }} {{ d['b'][1] }} {{ d.b.1 }} {{ d | length }}",
     "True False 2 2 3"},
    {"{{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }}",
     "[0, 1, 2] [1, 4, 7] [5, 3, 1]"},
    {"{% if n > 3 %}big{% elif n > 1 %}mid{% else %}small{% endif %} {% if f < 1 %}a{% elif f < 2 %}b{% elif f < 3 %}c{% endif %}",
     "big c"},
    {"{%- set ns = namespace(found=false) -%}\n"
    "{%- for m in messages -%}\n"
    "  {%- if m.role == 'system' -%}{%- set ns.found = true -%}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "found={{ ns.found }}",
     "found=True"},
    {"{% raw %}{{ not evaluated }}{% endraw %}",
     "{{ not evaluated }}"},
    {"{{ 'a' 'b' }} {{ \"it's\" }} {{ 'say \"hi\"' }} {{ '\\u00e9\\x41\\t|' }} {{ 'a\\qb' }}",
     "ab it's say \"hi\" \303\251A\t| a\\qb"},
    {"{{ (1, 2) }} {{ (1,) }} {{ () }} {{ {'k': 'v'} }} {{ [{'a': \"x'y\"}] }} {{ none }} {{ true }}",
     "(1, 2) (1,) () {'k': 'v'} [{'a': \"x'y\"}] None True"},
    {"{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 1, 2 %}{{ t }}",
     "12 (1, 2)"},
    {"{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{% endfor %}{{ loop.index }}|{% endfor %}",
     "10201|11212|"},
    {"{{ [1, 2, 3][1:] }} {{ [1, 2, 3][:-1] }} {{ [1,2,3,4,5][::-2] }} {{ [1,2,3][5:] }}",
     "[2, 3] [1, 2] [5, 3, 1] []"},
    {"{{ messages | length - 1 }} {{ 'x' + s | lower }} {{ -n | abs }}",
     "2 xhello, world 5"},
    {"{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}",
     "aba"},
    {"line1\n"
    "  {% if true %}\n"
    "  kept\n"
    "  {% endif %}\n"
    "line2\n"
    "",
     "line1\n"
    "  kept\n"
    "line2"},
    {"{{ 'x' }}\n"
    "  {% if true %}y{% endif %}\n"
    "   {%+ if true %}z{% endif %}\n"
    "{% if true +%}\n"
    "w{% endif %}",
     "x\n"
    "y   z\n"
    "w"},
    {"{{ 10 // 3 }} {{ -10 // 3 }} {{ 10 % -3 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }} {{ 1 / 4 }} {{ 2 * 2.5 }} {{ true + 1 }}",
     "3 -4 -2 3.0 1.5 0.25 5.0 2"},
    {"{{ x | length }} {{ x | default(1) }} {% for i in x %}no{% endfor %} {{ x == none }} {{ x != 1 }} {{ not x }}",
     "0 1  False True True"},
    {"{{ messages[0] }} {{ d }}",
     "{'role': 'system', 'content': 'sys'} {'a': 1, 'b': [1, 2], 'c': None}"},
};
static const char *const TOOLS_TPL = "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{{- bos_token }}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- if tools is not none %}\n"
    "    {{- \"Environment: ipython\\n\" }}\n"
    "{%- endif %}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{%- if tools is not none and not tools_in_user_message %}\n"
    "    {{- \"You have access to the following functions.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    "            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n"
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "        {{- '\"parameters\": ' }}\n"
    "        {{- tool_call.arguments | tojson }}\n"
    "        {{- \"}\" }}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n"
    "        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
    "";
static const char *const TOOLS_TPL_WANT = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Environment: ipython\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "You have access to the following functions.\n"
    "\n"
    "{\n"
    "    \"type\": \"function\",\n"
    "    \"function\": {\n"
    "        \"name\": \"get_weather\",\n"
    "        \"description\": \"Get the weather\",\n"
    "        \"parameters\": {\n"
    "            \"type\": \"object\",\n"
    "            \"properties\": {\n"
    "                \"city\": {\n"
    "                    \"type\": \"string\"\n"
    "                },\n"
    "                \"unit\": {\n"
    "                    \"type\": \"string\",\n"
    "                    \"enum\": [\n"
    "                        \"c\",\n"
    "                        \"f\"\n"
    "                    ]\n"
    "                }\n"
    "            },\n"
    "            \"required\": [\n"
    "                \"city\"\n"
    "            ]\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"c\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "\"{\\\"temp\\\": 21}\"<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n"
    "\n"
    "\"sunny\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "21 C, sunny.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "";
static const char *const QWEN25_TPL = "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
    "";
static const char *const QWEN25_TPL_WANT = "<|im_start|>system\n"
    "  Be brief.  \n"
    "\n"
    "# Tools\n"
    "\n"
    "<tools>\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}\n"
    "</tools><|im_end|>\n"
    "<|im_start|>user\n"
    "Weather in Paris?<|im_end|>\n"
    "<|im_start|>assistant\n"
    "<tool_call>\n"
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
    "</tool_call><|im_end|>\n"
    "<|im_start|>user\n"
    "<tool_response>\n"
    "{\"temp\": 21}\n"
    "</tool_response>\n"
    "<tool_response>\n"
    "sunny\n"
    "</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
    "21 C, sunny.<|im_end|>\n"
    "<|im_start|>assistant\n"
    "";
static const char *const TOOL_VARS_JSON = "{\"messages\": [{\"role\": \"system\", \"content\": \"  Be brief.  \"}, {\"role\": \"user\", \"content\": \"Weather in Paris?\"}, {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}}]}, {\"role\": \"tool\", \"content\": \"{\\\"temp\\\": 21}\"}, {\"role\": \"tool\", \"content\": \"sunny\"}, {\"role\": \"assistant\", \"content\": \"21 C, sunny.\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}], \"add_generation_prompt\": true, \"bos_token\": \"<|begin_of_text|>\"}";

/* Renders src with vars (JSON text or NULL); returns status, output in *out. */
static ts_status render(const char *src, const char *vars_json, const ts_jinja_limits *lim,
                        ts_buf *out, ts_err *err) {
    ts_jinja *t = NULL;
    ts_status st = ts_jinja_parse(src, strlen(src), &t, err);
    if (st != TS_OK) return st;
    json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
    st = ts_jinja_render(t, vars, lim, out, err);
    json_decref(vars);
    ts_jinja_free(t);
    return st;
}

static void check_render(const char *src, const char *vars, const char *want) {
    ts_buf out = {0};
    ts_err err = {{0}};
    ts_status st = render(src, vars, NULL, &out, &err);
    const char *got = out.data ? out.data : "";
    CHECKF(st == TS_OK && !strcmp(got, want), "template %s\n got: [%s] (%s)\nwant: [%s]", src, got,
           st ? err.msg : "ok", want);
    ts_buf_free(&out);
}

static void check_error(const char *src, ts_status want_st, const char *want_msg) {
    ts_buf out = {0};
    ts_err err = {{0}};
    ts_status st = render(src, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", NULL, &out, &err);
    CHECKF(st == want_st && strstr(err.msg, want_msg) && out.len == 0,
           "template %s: status %d (want %d), message [%s] (want [%s])", src, (int)st, (int)want_st, err.msg,
           want_msg);
    ts_buf_free(&out);
}

static void test_cases(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) check_render(CASES[i].src, VARS_JSON, CASES[i].want);
    check_render(TOOLS_TPL, TOOL_VARS_JSON, TOOLS_TPL_WANT);
    check_render(QWEN25_TPL, TOOL_VARS_JSON, QWEN25_TPL_WANT);
}

/* Whitespace handling spelled out by hand: trim_blocks drops the newline
 * after a block tag, lstrip_blocks the indentation before one, '-' all
 * whitespace on its side, '+' turns either off; '{{ }}' is never touched;
 * one trailing newline of the template is dropped. */
static void test_whitespace(void) {
    check_render("{% if true %}\nA\n{% endif %}\nB", NULL, "A\nB");
    check_render("x\n    {% if true %}\n    y\n    {% endif %}\nz", NULL, "x\n    y\nz");
    check_render("a  {{ 1 }}  \n  {{ 2 }}\n", NULL, "a  1  \n  2");
    check_render("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    check_render("a\n  {%+ if true %}b{% endif %}", NULL, "a\n  b");
    check_render("{% if true +%}\nb{% endif %}", NULL, "\nb");
    check_render("a {# note #}\n  {# note #}\nb", NULL, "a b");   /* comments trim and lstrip too */
    check_render("{{- ' x ' -}}", NULL, " x ");
    check_render("1\r\n{% if true %}\r\n2\r\n{% endif %}\r\n", NULL, "1\n2\n");
    check_render("a\n\n", NULL, "a\n");
}

static void test_errors(void) {
    check_error("{{ x ", TS_ERR_FORMAT, "unterminated '{{'");
    check_error("a\nb\n{% if x", TS_ERR_FORMAT, "line 3");
    check_error("{% for m in messages %}", TS_ERR_FORMAT, "never closed");
    check_error("{% if true %}{% endfor %}", TS_ERR_FORMAT, "endfor");
    check_error("{{ 1 | no_such_filter }}", TS_ERR_FORMAT, "no filter named 'no_such_filter'");
    check_error("{{ 1 is no_such_test }}", TS_ERR_FORMAT, "no test named");
    check_error("{{ 'abc }}", TS_ERR_FORMAT, "unterminated string");
    check_error("{# never closed", TS_ERR_FORMAT, "unterminated comment");
    check_error("{% break %}", TS_ERR_FORMAT, "outside of a for loop");
    check_error("{{ 1 + }}", TS_ERR_FORMAT, "expected an expression");
    check_error("{% frobnicate %}", TS_ERR_FORMAT, "frobnicate");
    check_error("{{ 99999999999999999999 }}", TS_ERR_FORMAT, "too large");
    check_error("\n{{ raise_exception('Only user and assistant roles are supported!') }}", TS_ERR_INVALID,
                "line 2: Only user and assistant roles are supported!");
    check_error("{{ nothing.attr }}", TS_ERR_INVALID, "'nothing' is undefined");
    check_error("{{ messages[0].content + 1 }}", TS_ERR_INVALID, "unsupported operand");
    check_error("{{ 1 // 0 }}", TS_ERR_INVALID, "division");
    check_error("{{ 9223372036854775807 + 1 }}", TS_ERR_INVALID, "overflow");
    check_error("{{ messages | tojson(indent=2) | int + messages }}", TS_ERR_INVALID, "unsupported operand");
    check_error("{% set a, b = [1, 2, 3] %}", TS_ERR_INVALID, "unpack");
    check_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", TS_ERR_INVALID, "at most 1");
    check_error("{{ 1 < 'a' }}", TS_ERR_INVALID, "cannot compare");
    check_error("{{ none() }}", TS_ERR_INVALID, "not callable");
}

static void test_limits(void) {
    ts_jinja_limits small = {.max_steps = 100000, .max_output = 1000, .max_memory = 1 << 20, .max_depth = 20};
    struct { const char *src; const char *msg; } cases[] = {
        {"{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", "limit"},
        {"{% for a in range(10000) %}xxxxxxxxxx{% endfor %}", "output limit"},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper"},
        {"{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "limit"},
        {"{{ range(1000000) | length }}", "range too big"},
        {"{{ 'ab' * 100000000 }}", "limit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ts_buf out = {0};
        ts_err err = {{0}};
        ts_status st = render(cases[i].src, NULL, &small, &out, &err);
        CHECKF(st == TS_ERR_CAPACITY && strstr(err.msg, cases[i].msg) && out.len == 0,
               "limit case %zu: status %d, [%s]", i, (int)st, err.msg);
        ts_buf_free(&out);
    }
    /* default limits stop a nested loop of 10^15 iterations too */
    ts_buf out = {0};
    ts_err err = {{0}};
    ts_status st = render("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
                          "{% endfor %}{% endfor %}{% endfor %}", NULL, NULL, &out, &err);
    CHECKF(st == TS_ERR_CAPACITY, "default limits: %d %s", (int)st, err.msg);
    ts_buf_free(&out);
    /* deep nesting in the source is a parse error, not a stack overflow */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16), *chain = malloc(4 * n + 16);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) deep[3 + i] = '(';
    deep[3 + n] = '1';
    for (size_t i = 0; i < n; i++) deep[4 + n + i] = ')';
    strcpy(deep + 4 + 2 * n, " }}");
    st = render(deep, NULL, NULL, &out, &err);
    CHECKF(st == TS_ERR_FORMAT && strstr(err.msg, "nested too deeply"), "deep parens: %d %s", (int)st, err.msg);
    strcpy(chain, "{{ 1");
    for (size_t i = 0; i < n; i++) memcpy(chain + 4 + 2 * i, "+1", 2);
    strcpy(chain + 4 + 2 * n, " }}");
    st = render(chain, NULL, NULL, &out, &err);
    CHECKF(st == TS_ERR_INVALID && strstr(err.msg, "nested too deeply"), "long chain: %d %s", (int)st, err.msg);
    free(deep);
    free(chain);
    ts_buf_free(&out);
}

static void test_api(void) {
    ts_jinja *t = NULL;
    ts_err err = {{0}};
    CHECK(ts_jinja_parse("{{ a }}{{ b }}", 14, &t, &err) == TS_OK);
    ts_buf out = {0};
    CHECK(ts_buf_puts(&out, "keep:") == TS_OK);
    json_t *v = json_pack("{s:i}", "a", 7);
    CHECK(ts_jinja_render(t, v, NULL, &out, &err) == TS_OK && !strcmp(out.data, "keep:7"));
    json_t *arr = json_array();
    CHECK(ts_jinja_render(t, arr, NULL, &out, &err) == TS_ERR_INVALID && !strcmp(out.data, "keep:7"));
    CHECK(ts_jinja_render(t, NULL, NULL, &out, &err) == TS_OK && !strcmp(out.data, "keep:7"));
    json_decref(arr);
    json_decref(v);
    ts_jinja_free(t);
    ts_jinja_free(NULL);
    ts_buf_free(&out);
    /* one parsed template rendered many times gives the same text */
    CHECK(ts_jinja_parse("{% for i in range(3) %}{{ i }}{% endfor %}", 42, &t, &err) == TS_OK);
    for (int k = 0; k < 3; k++) {
        CHECK(ts_jinja_render(t, NULL, NULL, &out, &err) == TS_OK);
    }
    CHECK(out.data && !strcmp(out.data, "012012012"));
    ts_jinja_free(t);
    ts_buf_free(&out);
    /* strftime_now gives something date-like */
    check_error("{{ strftime_now(1) }}", TS_ERR_INVALID, "format string");
    ts_buf d = {0};
    CHECK(render("{{ strftime_now('%Y') | int > 2000 }}", NULL, NULL, &d, &err) == TS_OK && !strcmp(d.data, "True"));
    ts_buf_free(&d);
}

static void check_split(const char *text, const char *want_r, const char *want_a) {
    const char *r, *a;
    size_t rn, an;
    ts_chat_split_thinking(text, strlen(text), &r, &rn, &a, &an);
    CHECKF(rn == strlen(want_r) && !memcmp(r, want_r, rn) && an == strlen(want_a) && !memcmp(a, want_a, an),
           "split [%s]: [%.*s] [%.*s]", text, (int)rn, r, (int)an, a);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_chat(void) {
    check_split("<think>\nplan\n</think>\n\nAnswer.", "plan", "Answer.");
    check_split("plan only\n</think>\nAnswer", "plan only", "Answer");   /* <think> was in the prompt */
    check_split("Just an answer. ", "", "Just an answer.");
    check_split("<think>still going", "still going", "");
    check_split("<think></think>x", "", "x");

    ts_chat *c = NULL;
    ts_err err = {{0}};
    CHECK(ts_chat_from_source("{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                              "{% if add_generation_prompt %}>{% endif %}{{ enable_thinking is defined }}",
                              "<s>", NULL, &c, &err) == TS_OK);
    ts_chat_msg msgs[2] = {{"system", "S"}, {"user", "U"}};
    ts_buf out = {0};
    CHECK(ts_chat_render(c, msgs, 2, true, -1, &out, &err) == TS_OK && !strcmp(out.data, "<s>[system:S][user:U]>False"));
    ts_buf_clear(&out);
    CHECK(ts_chat_render(c, msgs, 1, false, 0, &out, &err) == TS_OK && !strcmp(out.data, "<s>[system:S]True"));
    ts_chat_free(c);
    ts_chat_free(NULL);
    CHECK(ts_chat_from_source("{% if %}", NULL, NULL, &c, &err) == TS_ERR_FORMAT && c == NULL);

    char dir[] = "/tmp/ts_chat_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        ts_buf_free(&out);
        return;
    }
    CHECK(ts_chat_load(dir, &c, &err) == TS_ERR_NOTFOUND && strstr(err.msg, "tokenizer_config.json"));
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": ");
    CHECK(ts_chat_load(dir, &c, &err) == TS_ERR_FORMAT && strstr(err.msg, "tokenizer_config.json") &&
          strstr(err.msg, "invalid JSON"));
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"eos_token\": \"<E>\", "
               "\"model_max_length\": 1000000000000000019884624838656, \"chat_template\": "
               "[{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": "
               "\"{{ bos_token }}{{ messages[0].content }}{{ eos_token }}\"}]}");
    CHECKF(ts_chat_load(dir, &c, &err) == TS_OK, "%s", err.msg);
    ts_buf_clear(&out);
    CHECK(c && ts_chat_render(c, msgs, 1, true, -1, &out, &err) == TS_OK && !strcmp(out.data, "<B>S<E>"));
    ts_chat_free(c);
    c = NULL;
    write_file(dir, "chat_template.jinja", "J{{ eos_token }}\n");
    CHECKF(ts_chat_load(dir, &c, &err) == TS_OK, "%s", err.msg);
    ts_buf_clear(&out);
    CHECK(c && ts_chat_render(c, msgs, 1, true, -1, &out, &err) == TS_OK && !strcmp(out.data, "J<E>"));
    ts_chat_free(c);
    c = NULL;
    write_file(dir, "chat_template.jinja", "{% for %}");
    CHECK(ts_chat_load(dir, &c, &err) == TS_ERR_FORMAT && strstr(err.msg, "chat_template.jinja") && !c);
    char p[600];
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    unlink(p);
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": 5}");
    CHECK(ts_chat_load(dir, &c, &err) == TS_ERR_FORMAT && strstr(err.msg, "chat_template"));
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": \"{{ raise_exception('no system') }}\"}");
    CHECKF(ts_chat_load(dir, &c, &err) == TS_OK, "%s", err.msg);
    ts_buf_clear(&out);
    CHECK(ts_chat_render(c, msgs, 1, true, -1, &out, &err) == TS_ERR_INVALID && strstr(err.msg, "no system") &&
          out.len == 0);
    ts_chat_free(c);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    unlink(p);
    rmdir(dir);
    ts_buf_free(&out);
}

int main(void) {
    test_cases();
    test_whitespace();
    test_errors();
    test_limits();
    test_api();
    test_chat();
    return ts_test_done("test_jinja");
}
