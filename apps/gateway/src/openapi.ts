/**
 * The OpenAPI document of the gateway, generated once at startup from the controllers and DTOs
 * (@nestjs/swagger) and served at GET /v1/openapi.json.
 */
import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';

/** Holds the document, which can only be built once the application exists. */
export class OpenApiDocument {
  private document: OpenAPIObject | undefined;

  /** Builds the document from `app`'s routes; call once after NestFactory.create. */
  build(app: INestApplication, version: string): void {
    const config = new DocumentBuilder()
      .setTitle('Flotilla gateway')
      .setDescription('REST API of Flotilla, a replicated SQL database. LSNs are decimal strings. Errors are {error:{code,message}}.')
      .setVersion(version)
      .build();
    this.document = SwaggerModule.createDocument(app, config);
  }

  get(): OpenAPIObject {
    if (!this.document) throw new Error('OpenAPI document requested before it was built');
    return this.document;
  }
}
