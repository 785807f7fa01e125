"""Ask a model one question through an official Python client, unchanged.

Each client is the library as published, used through its public, documented API;
the only thing pointing it at Envoy (and not at the vendor or a local Ollama) is its
documented base-URL setting:

    langchain  langchain-ollama  ChatOllama(base_url=...)              POST /api/chat
    ollama     ollama            Client(host=...).generate             POST /api/generate
    anthropic  anthropic         Anthropic(base_url=..., api_key=...)  POST /v1/messages
    genai      google-genai      Client(http_options=HttpOptions(base_url=...))
                                 POST /v1/models/{model}:generateContent

The API key the Anthropic and Gemini clients send is a placeholder by default
("set-by-envoy"): Envoy replaces it with the real key, so the application never holds it.

Output is one JSON object per line, flushed as it is written: with --stream,
{"chunk": "..."} for each non-empty piece of text as it arrives, then in every case
{"answer": "<the full text>"}. On an error the exception's traceback goes to stderr
and the exit status is 1.

    python ask.py --client anthropic --base-url http://127.0.0.1:10000 \\
        --model claude-sonnet-4-5 --prompt "Which color are you?" --stream
"""

import argparse
import json


def langchain(args):
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=args.model, base_url=args.base_url)
    if args.stream:
        for chunk in llm.stream(args.prompt):
            yield chunk.content
    else:
        yield llm.invoke(args.prompt).content


def ollama(args):
    from ollama import Client

    client = Client(host=args.base_url)
    if args.stream:
        for part in client.generate(model=args.model, prompt=args.prompt, stream=True):
            yield part.response
    else:
        yield client.generate(model=args.model, prompt=args.prompt).response


def anthropic(args):
    from anthropic import Anthropic

    client = Anthropic(base_url=args.base_url, api_key=args.api_key)
    request = dict(
        model=args.model,
        max_tokens=1024,
        messages=[{"role": "user", "content": args.prompt}],
    )
    if args.stream:
        with client.messages.stream(**request) as stream:
            yield from stream.text_stream
    else:
        message = client.messages.create(**request)
        yield "".join(block.text for block in message.content if block.type == "text")


def genai(args):
    from google import genai
    from google.genai import types

    client = genai.Client(
        vertexai=False,  # the Gemini Developer API
        api_key=args.api_key,
        http_options=types.HttpOptions(base_url=args.base_url),
    )
    if args.stream:
        for chunk in client.models.generate_content_stream(model=args.model, contents=args.prompt):
            yield chunk.text or ""
    else:
        yield client.models.generate_content(model=args.model, contents=args.prompt).text


CLIENTS = {"langchain": langchain, "ollama": ollama, "anthropic": anthropic, "genai": genai}


def emit(**line):
    print(json.dumps(line), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--base-url", required=True, help="where the client sends requests (Envoy)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--stream", action="store_true", help="print each chunk as it arrives")
    parser.add_argument("--api-key", default="set-by-envoy", help="anthropic and genai only")
    args = parser.parse_args()

    answer = ""
    for text in CLIENTS[args.client](args):
        if args.stream and text:
            emit(chunk=text)
        answer += text
    emit(answer=answer)


if __name__ == "__main__":
    main()
